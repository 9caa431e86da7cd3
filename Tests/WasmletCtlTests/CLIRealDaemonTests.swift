import Foundation
import Testing
import WasmletClient
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real `wasmletd` (built by SwiftPM next to this test binary) on a temporary socket and
/// state directory, a ChildProcess (posix_spawn and waitpid; see there why not Process).
final class RealDaemon: @unchecked Sendable {
    let directory: String
    let socketPath: String
    let child: ChildProcess
    let logPath: String

    /// `reusing` a directory a previous daemon had (killed, say) starts on its state.
    init(arguments: [String] = [], reusing previous: String? = nil) async throws {
        if let previous {
            directory = previous
        } else {
            var template = Array("/tmp/wctld-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw CLIError("mkdtemp failed") }
            directory = String(cString: made)
        }
        socketPath = directory + "/api.sock"
        logPath = directory + (previous == nil ? "/wasmletd.log" : "/wasmletd-again.log")
        var env = ProcessInfo.processInfo.environment
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            env[name] = nil
        }
        child = try ChildProcess(
            daemonPath, ["--socket", socketPath, "--state-dir", directory + "/state", "--shutdown-grace", "1s"] + arguments,
            environment: env, stdout: logPath, stderr: nil)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let ended = child.poll() { throw CLIError("wasmletd \(ended) before serving:\n\(log())") }
            if let client = try? await WasmletClient.connect(socketPath: socketPath) {
                await client.close()
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        stop()
        throw CLIError("wasmletd did not serve \(socketPath) in time:\n\(log())")
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGKILL, reap and remove the directory: brief, so fine from `defer` (a graceful stop
    /// would hold a thread for the shutdown grace). Nothing checks how the daemon ends here.
    func stop() {
        child.killAndReap()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Enabled whenever this checkout has the daemon; then its binary must have been built.
let daemonInRepository = FileManager.default.fileExists(atPath: repositoryRoot + "/Sources/wasmletd")

/// wasmletctl end to end against the real wasmletd binary.
@Suite(.serialized, .enabled(if: daemonInRepository))
struct CLIRealDaemonTests {
    @Test func endToEnd() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: daemonPath), "wasmletd not built at \(daemonPath)")
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let socket = ["--socket", daemon.socketPath]

        // hello: output streamed, exit 0, instance deleted (--rm default).
        let hello = try await wasmletctl(socket + ["run", "examples/build/hello.wasm"])
        #expect(hello.stdout == "hello from wasmlet\n")
        #expect(hello.stderr == "")
        #expect(hello.status == 0)

        // echo: the guest's exit code passes through; argv, env and stderr arrive.
        let echo = try await wasmletctl(
            socket + ["run", "--env", "GREETING=hi", "examples/build/echo.wasm", "--stderr", "oops", "--exit", "3"])
        #expect(echo.status == 3)
        #expect(echo.stdout.hasPrefix("argv[0]=echo.wasm\nargv[1]=--stderr\nargv[2]=oops\nargv[3]=--exit\nargv[4]=3\n"))
        #expect(echo.stdout.contains("env GREETING=hi\n"))
        #expect(echo.stderr == "oops\n")

        let empty = try await wasmletctl(socket + ["list"])
        #expect(empty.status == 0)
        #expect(empty.stdout == "NAMESPACE   ID   STATE   EXIT   MODULE   AGE\n", "hello and echo were --rm'd")

        // A sleeper: list, list -o json and inspect while it runs; kill it; inspect the exit.
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "WASMLET_SOCKET")
        let sleeper = try Child(
            wasmletctlPath, socket + ["run", "--no-rm", "--id", "sl", "-l", "role=sleeper", "examples/build/sleeper.wasm"],
            environment: env, currentDirectory: repositoryRoot)
        let deadline = ContinuousClock.now + .seconds(30)
        // The whole line: the output can arrive in two reads.
        while !sleeper.stdout.contains("sleeping\n") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(sleeper.stdout == "sleeping\n")

        let table = try await wasmletctl(socket + ["list"])
        let rows = table.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        #expect(rows.count == 2)
        #expect(rows.last.map { Array($0.prefix(4)) } == ["default", "sl", "running", "-"])

        let json = try await wasmletctl(socket + ["list", "-o", "json", "-l", "role=sleeper"])
        let parsed = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let instances = try #require(parsed?["instances"] as? [[String: Any]])
        #expect(instances.count == 1)
        #expect(instances.first?["id"] as? String == "sl")
        #expect(instances.first?["state"] as? String == "running")
        #expect((instances.first?["moduleDigest"] as? String)?.hasPrefix("sha256:") == true)
        let none = try await wasmletctl(socket + ["list", "-o", "json", "-l", "role=other"])
        #expect(none.stdout == "{\n  \"instances\": []\n}\n")

        let running = try await wasmletctl(socket + ["inspect", "sl"])
        #expect(running.status == 0)
        #expect(running.stdout.contains("\"state\": \"running\""))
        #expect(running.stdout.contains("\"modulePath\": \"\(repositoryRoot)/examples/build/sleeper.wasm\""))

        let killed = try await wasmletctl(socket + ["kill", "sl", "-s", "SIGKILL"])
        #expect(killed.status == 0)
        #expect(killed.stderr == "")
        let sleeperResult = await sleeper.finish()
        #expect(sleeperResult.status == 137)
        #expect(sleeperResult.stderr.contains("default/sl killed by signal 9"))

        let exited = try await wasmletctl(socket + ["inspect", "sl"])
        let record = try JSONSerialization.jsonObject(with: Data(exited.stdout.utf8)) as? [String: Any]
        #expect(record?["state"] as? String == "exited")
        let exit = record?["exit"] as? [String: Any]
        #expect(exit?["code"] as? Int == 137)
        #expect(exit?["reason"] as? String == "killed")

        let deleted = try await wasmletctl(socket + ["delete", "sl"])
        #expect(deleted.status == 0)
        let gone = try await wasmletctl(socket + ["inspect", "sl"])
        #expect(gone.status == 1)
        #expect(gone.stderr.hasPrefix("wasmletctl: ") && gone.stderr.contains("default/sl"))
        #expect(gone.stderr.split(separator: "\n").count == 1)

        let stats = try await wasmletctl(socket + ["stats"])
        #expect(stats.status == 0)
        #expect(stats.stdout.contains("instancesCreated:    3\n"))

        let version = try await wasmletctl(socket + ["version"])
        #expect(version.status == 0)
        #expect(version.stdout.contains("API:      wasmlet.v1"))
    }

    @Test func ctrlCKillsTheGuest() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: daemonPath), "wasmletd not built at \(daemonPath)")
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "WASMLET_SOCKET")
        let child = try Child(
            wasmletctlPath, ["--socket", daemon.socketPath, "run", "--id", "c1", "examples/build/sleeper.wasm"],
            environment: env, currentDirectory: repositoryRoot)
        let deadline = ContinuousClock.now + .seconds(30)
        // The whole line: the guest writes "sleeping" and "\n" as two writes (two iovecs), and a
        // kill that lands between them is the guest's bad luck, not a failure of `run`.
        while !child.stdout.contains("sleeping\n") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        child.signal(SIGINT)
        let result = await child.finish()
        #expect(result.status == 130)
        #expect(result.stdout == "sleeping\n")
        let list = try await wasmletctl(["--socket", daemon.socketPath, "list"])
        #expect(list.stdout.split(separator: "\n").count == 1, "the instance was deleted (--rm)")
    }

    /// stdin reaches the guest: 100 KB of random bytes round-trip through the C cat, which
    /// copies stdin to stdout until end-of-file.
    @Test func stdinRoundTripsThroughTheGuest() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: daemonPath), "wasmletd not built at \(daemonPath)")
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let input = (0..<100_000).map { _ in UInt8.random(in: 0...255) }
        let inputPath = daemon.directory + "/input.bin"
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        let child = try Child(
            wasmletctlPath, ["--socket", daemon.socketPath, "run", "examples/build/cat.wasm"],
            currentDirectory: repositoryRoot, stdin: inputPath)
        let ended = await child.child.wait(timeout: .seconds(60))
        let output = child.stdoutBytes
        let result = await child.finish()
        #expect(ended == .exited(0), "stderr: \(result.stderr)")
        #expect(output.count == input.count)
        #expect(output == input)
    }

    /// An empty stdin, a closed one, and --no-stdin each give the guest end-of-file at once.
    @Test(arguments: ["empty", "closed", "--no-stdin"])
    func noInputIsEndOfFile(kind: String) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: daemonPath), "wasmletd not built at \(daemonPath)")
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let child = try Child(
            wasmletctlPath, ["--socket", daemon.socketPath, "run"] + (kind == "--no-stdin" ? [kind] : []) + ["examples/build/cat.wasm"],
            currentDirectory: repositoryRoot, stdin: kind == "closed" ? nil : "/dev/null")
        let result = await child.finish()
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout == "")
    }

    /// Ctrl-C while the guest is blocked reading a stdin that never ends (a FIFO this test
    /// holds open without writing): the guest is killed and wasmletctl exits 130.
    @Test func ctrlCWhileTheGuestWaitsOnStdin() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: daemonPath), "wasmletd not built at \(daemonPath)")
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let fifo = daemon.directory + "/stdin.fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let held = open(fifo, O_RDWR | O_CLOEXEC)  // a writer that never writes, so no EOF
        defer { close(held) }
        let child = try Child(
            wasmletctlPath, ["--socket", daemon.socketPath, "run", "--id", "reader", "examples/build/cat.wasm"],
            currentDirectory: repositoryRoot, stdin: fifo)
        #expect(await eventually { (try? Self.inspect(daemon, "reader"))?.contains("\"state\": \"running\"") == true })
        child.signal(SIGINT)
        let result = await child.finish()
        #expect(result.status == 130)
        #expect(result.stderr.contains("default/reader killed by signal 2"))
    }

    private static func inspect(_ daemon: RealDaemon, _ id: String) throws -> String {
        let child = try Child(wasmletctlPath, ["--socket", daemon.socketPath, "inspect", id])
        _ = child.child.waitBlocking()
        return child.stdout
    }
}
