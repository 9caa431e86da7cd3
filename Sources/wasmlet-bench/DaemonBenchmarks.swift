import Foundation
import Glibc
import NIOCore
import WasmletAPI
import WasmletClient

/// The daemon through its real socket: the release `wasmletd` binary is spawned with a temporary
/// socket and state directory, and driven with `WasmletClient` and the release `wasmletctl`.
struct DaemonBenchmark {
    let wasmletd: String
    let wasmletctl: String
    let hello: String
    let runs: Int
    let instances: Int

    /// hello.wasm declares 2 pages (128 KiB) of initial memory, so that is the smallest cap it fits.
    static let helloMemoryCap: UInt64 = 128 << 10

    func run(_ report: Report) async throws {
        for binary in [wasmletd, wasmletctl] where !FileManager.default.isExecutableFile(atPath: binary) {
            report.add("daemon API figures", "not measured: \(binary) missing", "-")
            return
        }
        let daemon = try DaemonUnderTest(
            binary: wasmletd,
            arguments: ["--max-instances", "\(instances + 1_000)", "--memory-budget", "8GiB"])
        defer { daemon.stop() }
        try await daemon.waitUntilReady()
        report.add("wasmletd RSS, fresh (before any work)", mebibytes(daemon.residentBytes()), "report it")

        let client = try await WasmletClient.connect(socketPath: daemon.socket)
        let created = try await client.create(.with {
            $0.namespace = "bench"; $0.id = "inspected"; $0.path = hello; $0.args = ["hello"]
        })
        let digest = created.moduleDigest

        try await inspect(client, report)
        try await hellos(daemon, digest, report)
        try await list(daemon, client, digest, report)
        report.add("wasmletd RSS with \(instances) created instances", mebibytes(daemon.residentBytes()), "report it")
        await client.close()
    }

    /// Sequential Inspect calls on one connection, two ways:
    /// - from a task on Swift's global executor (how `wasmletctl` calls): each round trip also
    ///   wakes a pool thread for the answer and the connection's event loop for the request;
    /// - from a task whose executor is the connection's event loop, so the client adds no thread
    ///   hops and the figure is closer to what the daemon and the socket cost.
    /// On an idle virtual machine every wake-up of a sleeping vCPU is slow, so the first figure
    /// measured 60-65 µs with other work running and 155-165 µs with none (05:40 UTC).
    func inspect(_ client: WasmletClient, _ report: Report) async throws {
        @Sendable func measure() async throws -> Samples {
            for _ in 0..<200 { _ = try await client.inspect(namespace: "bench", id: "inspected") }
            var samples = Samples()
            for _ in 0..<5_000 {
                let start = now()
                _ = try await client.inspect(namespace: "bench", id: "inspected")
                samples.add(Double(now() - start))
            }
            return samples
        }
        let pooled = try await measure()
        report.add("Inspect round trip over the socket, p50", microseconds(pooled.median), "≤ 100 µs")
        report.add("Inspect round trip over the socket, p99", microseconds(pooled.percentile(99)), "-")
        let pinned = try await withTaskExecutorPreference(EventLoopTaskExecutor(client.eventLoop)) { try await measure() }
        report.add("Inspect round trip, client on its event loop, p50", microseconds(pinned.median), "≤ 100 µs")
        report.add("Inspect round trip, client on its event loop, p99", microseconds(pinned.percentile(99)), "-")
        // The peer: the same number of wake-ups with nothing else, in the same run.
        let floor = Self.socketPingPong(rounds: 5_000)
        report.add("64-byte Unix socket ping-pong, two threads (the floor), p50", microseconds(floor.median), "-")
        report.add(
            "  ratio Inspect (client on its loop) / ping-pong", String(format: "%.2f×", pinned.median / floor.median), "-")
    }

    /// Round trips of 64 bytes over a socketpair between this thread and an echo thread, with
    /// blocking read and write: what a request/response costs on this machine before any
    /// protocol, framing or handler (each side sleeps and is woken once per round trip).
    static func socketPingPong(rounds: Int) -> Samples {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return Samples() }
        let (near, far) = (pair[0], pair[1])
        let echoed = DispatchSemaphore(value: 0)
        let echo = Thread {
            var buffer = [UInt8](repeating: 0, count: 64)
            while read(far, &buffer, 64) == 64, write(far, buffer, 64) == 64 {}
            echoed.signal()
        }
        echo.start()
        var buffer = [UInt8](repeating: 0, count: 64)
        var samples = Samples()
        for round in 0..<(rounds + 200) {
            let start = now()
            guard write(near, buffer, 64) == 64, read(near, &buffer, 64) == 64 else { break }
            if round >= 200 { samples.add(Double(now() - start)) }
        }
        close(near)  // the echo thread's read returns 0 and it ends
        echoed.wait()
        close(far)
        return samples
    }

    /// create+start+wait of hello by digest, one connection per caller, two ways:
    /// - the target's figure: create+start+wait, the instances deleted after the timed run;
    /// - the whole cycle, each instance deleted after its wait (in the throughput, not in the
    ///   latency): what a client that cleans up as it goes gets.
    /// A run that does not exit 0 is counted and reported, not fatal.
    func hellos(_ daemon: DaemonUnderTest, _ digest: String, _ report: Report) async throws {
        let counter = Counter()
        /// One cycle: its latency (create to exit), the exit, and the create, start, wait and
        /// (when `delete`) delete round trips, in ns.
        @Sendable func cycle(_ client: WasmletClient, delete: Bool) async throws -> (Double, Wasmlet_V1_ExitRecord, [Double], String) {
            let id = "hello-\(counter.next())"
            let start = now()
            _ = try await client.create(.with {
                $0.namespace = "bench"; $0.id = id; $0.digest = digest; $0.args = ["hello"]
                $0.limits = .with { $0.memoryBytes = Self.helloMemoryCap }
            })
            let created = now()
            try await client.start(namespace: "bench", id: id)
            let started = now()
            let exit = try await client.wait(namespace: "bench", id: id)
            let exited = now()
            var phases = [created - start, started - created, exited - started].map { Double($0) }
            if delete {
                try await client.delete(namespace: "bench", id: id)
                phases.append(Double(now() - exited))
            }
            return (Double(exited - start), exit, phases, id)
        }

        let warmUp = try await WasmletClient.connect(socketPath: daemon.socket)
        for _ in 0..<50 { _ = try await cycle(warmUp, delete: true) }
        await warmUp.close()

        for delete in [false, true] {
            for concurrency in [1, 2, 4, 8] {
                var clients: [WasmletClient] = []
                for _ in 0..<concurrency { clients.append(try await WasmletClient.connect(socketPath: daemon.socket)) }
                let total = runs
                let daemonCPUBefore = daemon.cpuNanoseconds()
                let benchCPUBefore = processCPUNanoseconds()
                let start = now()
                let results = try await withThrowingTaskGroup(of: [(Double, Wasmlet_V1_ExitRecord, [Double], String)].self) { group in
                    for (worker, client) in clients.enumerated() {
                        group.addTask {
                            var mine: [(Double, Wasmlet_V1_ExitRecord, [Double], String)] = []
                            for _ in stride(from: worker, to: total, by: concurrency) {
                                mine.append(try await cycle(client, delete: delete))
                            }
                            return mine
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                let seconds = Double(now() - start) / 1e9
                let daemonCPU = Double(daemon.cpuNanoseconds() - daemonCPUBefore) / Double(total)
                let benchCPU = Double(processCPUNanoseconds() - benchCPUBefore) / Double(total)
                if !delete {
                    // Untimed: the next run starts from the same number of instances.
                    for (index, result) in results.enumerated() {
                        try await clients[index % concurrency].delete(namespace: "bench", id: result.3)
                    }
                }
                for client in clients { await client.close() }
                var samples = Samples()
                var phases = [Samples](repeating: Samples(), count: delete ? 4 : 3)
                for (latency, _, calls, _) in results {
                    samples.add(latency)
                    for (index, call) in calls.enumerated() { phases[index].add(call) }
                }
                let failures = results.map(\.1).filter { $0.code != 0 || $0.reason != .exited }
                let what = delete ? "create+start+wait+delete" : "create+start+wait"
                let label = "hello \(what) via socket, \(concurrency) conn\(concurrency == 1 ? "" : "s")"
                report.add("\(label), runs/s", String(format: "%.0f /s", Double(total) / seconds), delete ? "report it" : "≥ 2,000 /s")
                report.add("\(label), p50 create to exit", microseconds(samples.median), "-")
                let split = zip(["create", "start", "wait", "delete"], phases).map { name, calls in
                    "\(name) \(Int((calls.median / 1000).rounded()))"
                }
                report.add("\(label), p50 per call (µs)", split.joined(separator: ", "), "-")
                report.add(
                    "\(label), CPU per run: wasmletd / this client",
                    String(format: "%.0f µs / %.0f µs", daemonCPU / 1000, benchCPU / 1000), "-")
                if let first = failures.first {
                    report.add("\(label), runs not exiting 0", "\(failures.count) of \(total), e.g. code \(first.code): \(first.message)", "0")
                }
            }
        }
    }

    /// `wasmletctl list` (table, then `-o json`) with `instances` created, never started, instances.
    func list(_ daemon: DaemonUnderTest, _ client: WasmletClient, _ digest: String, _ report: Report) async throws {
        let existing = try await client.list().count
        let workers = 4
        let start = now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    let client = try await WasmletClient.connect(socketPath: daemon.socket)
                    var index = existing + worker
                    while index < instances {
                        _ = try await client.create(.with {
                            $0.namespace = "bench"; $0.id = "listed-\(index)"; $0.digest = digest; $0.args = ["hello"]
                            $0.limits = .with { $0.memoryBytes = Self.helloMemoryCap }
                        })
                        index += workers
                    }
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        let count = try await client.list().count
        guard count == instances else { throw BenchError("expected \(instances) instances, the daemon lists \(count)") }
        print(String(format: "  (created %d instances in %.1f s)", instances - existing, Double(now() - start) / 1e9))

        for (name, extra) in [("table", [String]()), ("-o json", ["-o", "json"])] {
            var samples = Samples()
            for _ in 0..<10 {
                let start = now()
                let status = try spawnAndWait(wasmletctl, ["--socket", daemon.socket, "list"] + extra)
                samples.add(Double(now() - start))
                guard status == 0 else { throw BenchError("wasmletctl list \(extra) exited with wait status \(status)") }
            }
            report.add("wasmletctl list (\(name)), \(instances) instances, median of 10", milliseconds(samples.median), "≤ 100 ms")
        }
    }
}

/// Runs a task's jobs on a NIO event loop (NIO's loops are serial executors, not task executors).
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    private let loop: any EventLoop
    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// A `wasmletd` child process on a temporary socket and state directory (under $TMPDIR or /tmp).
final class DaemonUnderTest: @unchecked Sendable {
    let directory: String
    let socket: String
    let pid: pid_t
    private var stopped = false

    init(binary: String, arguments: [String]) throws {
        let temporary = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(temporary)/wasmlet-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw BenchError("mkdtemp failed") }
        directory = String(cString: made)
        socket = "\(directory)/wasmlet.sock"
        let log = open("\(directory)/wasmletd.log", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        defer { close(log) }
        pid = try spawn(binary, ["--socket", socket, "--state-dir", "\(directory)/state"] + arguments, stdout: log, stderr: log)
        print("  wasmletd pid \(pid), socket \(socket), log \(directory)/wasmletd.log")
    }

    /// Polls Version on the socket until it answers (up to 30 s).
    func waitUntilReady() async throws {
        for _ in 0..<600 {
            if let client = try? await WasmletClient.connect(socketPath: socket) {
                let answered = (try? await client.version()) != nil
                await client.close()
                if answered { return }
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                stopped = true
                throw BenchError("wasmletd exited early (status \(status)); see \(directory)/wasmletd.log")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError("wasmletd did not answer Version within 30 s; see \(directory)/wasmletd.log")
    }

    /// VmRSS of the daemon, from /proc/<pid>/status.
    func residentBytes() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = UInt64(line.split(separator: " ")[1])
        else { return 0 }
        return kib * 1024
    }

    /// CPU time (user + system) the daemon has used so far, in ns, from /proc/<pid>/stat. Less
    /// sensitive to a busy machine than throughput: what a cycle costs the daemon, not how long
    /// it waited for a core.
    func cpuNanoseconds() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return 0 }
        return (user + system) * 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// SIGTERM, wait for the exit, remove the temporary directory.
    func stop() {
        guard !stopped else { return }
        stopped = true
        let start = now()
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        print(String(format: "  wasmletd stopped on SIGTERM in %@, wait status %d", milliseconds(Double(now() - start)), status))
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// posix_spawn with stdin from /dev/null and the given stdout/stderr; returns the child's pid.
func spawn(_ path: String, _ arguments: [String], stdout: Int32, stderr: Int32) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, stdout, 1)
    posix_spawn_file_actions_adddup2(&actions, stderr, 2)
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for argument in argv { free(argument) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
    return pid
}

/// Runs `path` with stdout to /dev/null (stderr inherited) and returns its exit status.
func spawnAndWait(_ path: String, _ arguments: [String]) throws -> Int32 {
    let devNull = open("/dev/null", O_WRONLY)
    defer { close(devNull) }
    let pid = try spawn(path, arguments, stdout: devNull, stderr: 2)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return status
}

/// CPU time (user + system) of this process so far, in ns.
func processCPUNanoseconds() -> UInt64 {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let user = UInt64(usage.ru_utime.tv_sec) * 1_000_000_000 + UInt64(usage.ru_utime.tv_usec) * 1000
    let system = UInt64(usage.ru_stime.tv_sec) * 1_000_000_000 + UInt64(usage.ru_stime.tv_usec) * 1000
    return user + system
}

func mebibytes(_ bytes: UInt64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
