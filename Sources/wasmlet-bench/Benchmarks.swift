import Foundation
import Glibc
import WasmKit
import WasmKitWASI
import WAT
import WasmletRuntime

/// create + run-to-exit of the C hello, module cached: latency, then throughput on all cores.
struct StartBenchmark {
    let guests: Guests
    let runs: Int

    func run(_ report: Report) async throws {
        let hello = try guests.digest("hello")
        for _ in 0..<50 { _ = try await guests.run(hello) }
        var samples = Samples()
        for _ in 0..<runs {
            let start = now()
            let exit = try await guests.run(hello)
            samples.add(Double(now() - start))
            precondition(exit.code == 0, "hello failed: \(exit)")
        }
        report.add("hello create+run-to-exit, p50", microseconds(samples.median), "≤ 250 µs")
        report.add("hello create+run-to-exit, p99", microseconds(samples.percentile(99)), "-")

        for concurrency in [2, 4] {
            let total = runs
            let start = now()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<concurrency {
                    group.addTask {
                        for _ in stride(from: worker, to: total, by: concurrency) { _ = try await guests.run(hello) }
                    }
                }
                try await group.waitForAll()
            }
            let seconds = Double(now() - start) / 1e9
            report.add("hello runs/s, \(concurrency) concurrent callers", String(format: "%.0f /s", Double(total) / seconds), "≥ 5,000 /s")
        }
    }
}

/// The same hello started in-process versus spawning its native build as a process.
struct SpawnBenchmark {
    let guests: Guests
    let runs: Int

    func run(_ report: Report) async throws {
        let hello = try guests.digest("hello")
        let native = "\(guests.directory)/native/hello"
        guard FileManager.default.isExecutableFile(atPath: native) else {
            report.add("hello in-process vs native process spawn", "not measured: \(native) missing", "wasmlet faster")
            return
        }
        var wasm = Samples()
        var process = Samples()
        let devNull = open("/dev/null", O_WRONLY)
        defer { close(devNull) }
        for _ in 0..<runs {
            var start = now()
            _ = try await guests.run(hello)
            wasm.add(Double(now() - start))

            start = now()
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            posix_spawn_file_actions_adddup2(&actions, devNull, 1)
            var pid = pid_t()
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(native), nil]
            let rc = posix_spawn(&pid, native, &actions, nil, argv, environ)
            posix_spawn_file_actions_destroy(&actions)
            free(argv[0])
            guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            process.add(Double(now() - start))
        }
        report.add("hello start-to-exit, wasmlet in-process, p50", microseconds(wasm.median), "-")
        report.add("hello start-to-exit, native process spawn, p50", microseconds(process.median), "-")
        report.add("  ratio wasmlet / native spawn", String(format: "%.2f×", wasm.median / process.median), "< 1 (wasmlet faster)")
    }
}

/// Time from kill() to the exit record, for a guest asleep in a host call, one in a pure loop,
/// and (issue 12) one blocked in sock_accept and one blocked in sock_recv on a listener of its own.
struct KillBenchmark {
    let guests: Guests
    let runs: Int

    func run(_ report: Report) async throws {
        for (name, args) in [("sleeper", ["sleeper"]), ("cpuhog", ["cpuhog"])] {
            let digest = try guests.digest(name)
            var samples = Samples()
            for _ in 0..<runs {
                let key = try guests.start(digest, args: args)
                try await guests.waitUntilRunning(key)
                try await Task.sleep(for: .milliseconds(2))
                samples.add(try await killAndWait(key))
            }
            let target = name == "sleeper" ? "p99 ≤ 10 ms" : "p99 ≤ 100 ms"
            report.add("kill latency, \(name == "sleeper" ? "sleeping" : "compute-loop") guest, p50", milliseconds(samples.median), "-")
            report.add("kill latency, \(name == "sleeper" ? "sleeping" : "compute-loop") guest, p99", milliseconds(samples.percentile(99)), target)
        }
        for call in ["accept", "recv"] {
            let digest = try guests.runtime.loadModule(bytes: try wat2wasm(Self.socketGuest(call))).digest
            var samples = Samples()
            for _ in 0..<runs {
                let key = InstanceKey(namespace: "bench", id: "kill-\(call)-\(UUID().uuidString)")
                try guests.runtime.create(InstanceSpec(
                    key: key, moduleDigest: digest, args: [call], limits: InstanceLimits(memoryBytes: 1 << 20),
                    listeners: [ListenerSpec(address: "127.0.0.1", port: 0)]))
                // The recv guest's connection is queued before it starts, so its accept returns at
                // once and the only call it can block in is recv.
                var client: Int32 = -1
                if call == "recv" {
                    guard let port = try guests.runtime.inspect(key).listeners.first?.boundPort else { throw BenchError("no bound listener") }
                    client = try Loopback.connect(port: port)
                }
                defer { if client >= 0 { close(client) } }
                let blockedBefore = guests.runtime.statistics().guestsBlockedInHostCalls
                try guests.runtime.start(key)
                while guests.runtime.statistics().guestsBlockedInHostCalls <= blockedBefore { try await Task.sleep(for: .microseconds(200)) }
                samples.add(try await killAndWait(key))
            }
            report.add("kill latency, guest blocked in \(call), p50", milliseconds(samples.median), "-")
            report.add("kill latency, guest blocked in \(call), p99", milliseconds(samples.percentile(99)), "p99 ≤ 10 ms")
        }
    }

    /// Nanoseconds from kill() to the exit that wait() returns; fails unless the kill landed.
    private func killAndWait(_ key: InstanceKey) async throws -> Double {
        let start = now()
        try guests.runtime.kill(key)
        let exit = try await guests.runtime.wait(key)
        let elapsed = Double(now() - start)
        precondition(exit.reason == .killed && !exit.message.contains("abandoned"), "kill did not land: \(exit)")
        _ = try? guests.runtime.delete(key)
        return elapsed
    }

    /// A guest that blocks in sock_accept on fd 3 (its listener), or accepts and then blocks in
    /// sock_recv on the connection.
    static func socketGuest(_ call: String) -> String {
        let recv = call == "recv" ? """
            (i32.store (i32.const 1024) (i32.const 2048))
            (i32.store (i32.const 1028) (i32.const 16))
            (drop (call $recv (i32.load (i32.const 0)) (i32.const 1024) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)))
            """ : ""
        return """
            (module
              (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (func (export "_start")
                (drop (call $accept (i32.const 3) (i32.const 0) (i32.const 0)))
                \(recv)))
            """
    }
}

/// Calls a compute guest's `bench(n)` export directly on WasmKit, as wasmlet runs it.
struct DirectCall {
    let instance: Instance
    let store: Store
    let bridge: WASIBridgeToHost

    init(path: String, fuelMetering: Bool) throws {
        let engine = Engine(configuration: EngineConfiguration(fuelMetering: fuelMetering))
        store = Store(engine: engine)
        bridge = try WASIBridgeToHost(args: [], environment: [:], preopens: [], stdin: -1, stdout: -1, stderr: -1)
        var imports = Imports()
        bridge.link(to: &imports, store: store)
        instance = try parseWasm(filePath: path).instantiate(store: store, imports: imports)
        if fuelMetering { store.fuel = Fuel(remaining: 1 << 62) }
    }

    func close() { try? bridge.close() }

    /// Median nanoseconds of `bench(n)` over `runs` calls after one warm-up, and its checksum.
    func time(n: Int32, runs: Int) throws -> (Double, Int32) {
        guard let bench = instance.exports[function: "bench"] else { throw BenchError("no bench export") }
        var result = try bench([.i32(UInt32(bitPattern: n))])
        var samples = Samples()
        for _ in 0..<runs {
            let start = now()
            result = try bench([.i32(UInt32(bitPattern: n))])
            samples.add(Double(now() - start))
        }
        guard case .i32(let checksum) = result.first else { throw BenchError("bench returned no i32") }
        return (samples.median, Int32(bitPattern: checksum))
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Fuel metering on versus off, same guest, same engine otherwise.
struct FuelBenchmark {
    let guests: Guests

    func run(_ report: Report) throws {
        for (name, n) in [("fib", Int32(27)), ("sort", Int32(300_000))] {
            let on = try DirectCall(path: guests.path(name), fuelMetering: true)
            let off = try DirectCall(path: guests.path(name), fuelMetering: false)
            defer { on.close(); off.close() }
            // Interleave rounds so drift on a noisy machine hits both sides alike.
            var onSamples = Samples()
            var offSamples = Samples()
            for _ in 0..<5 {
                onSamples.add(try on.time(n: n, runs: 1).0)
                offSamples.add(try off.time(n: n, runs: 1).0)
            }
            report.add("fuel metering on/off, \(name)(\(n))", String(format: "%.2f× (%@ vs %@)", onSamples.median / offSamples.median,
                milliseconds(onSamples.median), milliseconds(offSamples.median)), "≤ 1.35×")
        }
    }
}

/// A short guest's start-to-exit alone, then beside 4 CPU-bound guests.
struct FairnessBenchmark {
    let guests: Guests

    func run(_ report: Report) async throws {
        let hello = try guests.digest("hello")
        let hog = try guests.digest("cpuhog")
        func measure() async throws -> Double {
            var samples = Samples()
            for _ in 0..<100 {
                let start = now()
                _ = try await guests.run(hello)
                samples.add(Double(now() - start))
            }
            return samples.median
        }
        let solo = try await measure()
        let hogs = try (0..<4).map { _ in try guests.start(hog, args: ["cpuhog"], limits: InstanceLimits()) }
        try await Task.sleep(for: .milliseconds(100))
        let loaded = try await measure()
        for key in hogs { try guests.runtime.kill(key) }
        for key in hogs { _ = try await guests.runtime.wait(key) }
        report.add("short guest (hello) p50 alone", microseconds(solo), "-")
        report.add("short guest (hello) p50 beside 4 CPU hogs", String(format: "%@ (%.1f× slower)", microseconds(loaded), loaded / solo), "report it")
    }
}

/// Compute guests on wasmlet (WasmKit with fuel metering, as the runtime runs them) against
/// wasmtime, wasm3 and native, all in this run (peers through scripts/bench-peers.py).
struct ComputeBenchmark {
    let guests: Guests

    func run(_ report: Report) throws {
        let cases: [(String, Int32)] = [("fib", 30), ("sha256", 4), ("sort", 1_000_000)]
        var ours: [String: (Double, Int32)] = [:]
        for (name, n) in cases {
            let call = try DirectCall(path: guests.path(name), fuelMetering: true)
            defer { call.close() }
            ours[name] = try call.time(n: n, runs: 5)
        }
        let peers = runPeers(cases)
        for (name, n) in cases {
            guard let (wasmlet, checksum) = ours[name] else { continue }
            var line = "wasmlet \(milliseconds(wasmlet))"
            let entry = peers?[name] as? [String: Any]
            var ratios: [String] = []
            for peer in ["wasmtime", "wasm3", "native"] {
                if let ns = entry?["\(peer)_ns"] as? Double {
                    ratios.append("\(peer) \(milliseconds(ns)) (wasmlet/\(peer) \(String(format: "%.2f", wasmlet / ns))×)")
                } else {
                    ratios.append("\(peer) not measured")
                }
            }
            if let peerChecksum = entry?["checksum"] as? Int, Int32(truncatingIfNeeded: peerChecksum) != checksum {
                ratios.append("CHECKSUM MISMATCH \(checksum) vs \(peerChecksum)")
            }
            line += "; " + ratios.joined(separator: "; ")
            report.add("compute \(name)(\(n))", line, "wasmlet ≥ wasm3's speed")
        }
    }

    private func runPeers(_ cases: [(String, Int32)]) -> [String: Any]? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "scripts/bench-peers.py", "--runs", "5", "--build-dir", guests.directory,
                             "--guests", cases.map { "\($0.0)=\($0.1)" }.joined(separator: ",")]
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
}

/// RSS per instance with many guests asleep at once.
struct DensityBenchmark {
    let guests: Guests
    let count: Int

    func run(_ report: Report) async throws {
        let sleeper = try guests.digest("sleeper")
        // Warm the module and the runtime so one-time costs are not charged to instances.
        let warm = try guests.start(sleeper, args: ["sleeper"])
        try await guests.waitUntilRunning(warm)
        try await Task.sleep(for: .milliseconds(300))
        let before = residentBytes()
        let mappingsBefore = ResidentMappings.now().mappingCount
        var keys: [InstanceKey] = []
        for _ in 0..<count { keys.append(try guests.start(sleeper, args: ["sleeper"])) }
        while guests.runtime.statistics().running < count + 1 { try await Task.sleep(for: .milliseconds(50)) }
        try await Task.sleep(for: .seconds(2))  // every guest has reached its sleep
        let after = residentBytes()
        let perInstance = Double(after - before) / Double(count)
        report.add("\(count) sleeping instances: RSS per instance", String(format: "%.1f KiB (total %.0f MiB)", perInstance / 1024,
            Double(after) / 1_048_576), "≤ 256 KiB")
        let mappings = ResidentMappings.now().mappingCount - mappingsBefore
        report.add("\(count) sleeping instances: memory mappings per instance", String(format: "%.2f (vm.max_map_count bounds the total)",
            Double(mappings) / Double(count)), "-")
        for key in keys + [warm] { try guests.runtime.kill(key) }
        for key in keys + [warm] { _ = try await guests.runtime.wait(key) }
    }
}

/// Where a hello start spends its time, phase by phase, on WasmKit directly (diagnostic).
struct PhaseBenchmark {
    let guests: Guests

    func run(_ report: Report) throws {
        let module = try parseWasm(filePath: guests.path("hello"))
        let engine = Engine(configuration: EngineConfiguration(fuelMetering: true))
        var bridgeT = Samples(), linkT = Samples(), instT = Samples(), runT = Samples(), closeT = Samples()
        let devNull = open("/dev/null", O_WRONLY)
        for _ in 0..<500 {
            var t = now()
            let bridge = try WASIBridgeToHost(args: ["hello"], environment: [:], preopens: [], stdin: -1, stdout: devNull, stderr: devNull)
            bridgeT.add(Double(now() - t)); t = now()
            let store = Store(engine: engine)
            var imports = Imports()
            bridge.link(to: &imports, store: store)
            linkT.add(Double(now() - t)); t = now()
            let instance = try module.instantiate(store: store, imports: imports)
            instT.add(Double(now() - t)); t = now()
            _ = try bridge.start(instance)
            runT.add(Double(now() - t)); t = now()
            try bridge.close()
            closeT.add(Double(now() - t))
        }
        report.add("phase: WASI bridge", microseconds(bridgeT.median), "-")
        report.add("phase: store + link", microseconds(linkT.median), "-")
        report.add("phase: instantiate", microseconds(instT.median), "-")
        report.add("phase: _start (incl. lazy translation)", microseconds(runT.median), "-")
        report.add("phase: close", microseconds(closeT.median), "-")
    }
}

/// Admission on the runtime's defaults (budget half of RAM, committed admission, 128 MiB default
/// cap, 10,000 instances at most): how many sleeping guests started with no limits, as plain
/// `wasmletctl run` starts them, are admitted, what they are charged, and what they cost in RSS.
/// Then the same creates under reserve-caps admission, for comparison (never started).
struct AdmissionBenchmark {
    let directory: String
    let count: Int

    func run(_ report: Report) async throws {
        let defaults = RuntimeConfiguration()
        let runtime = try WasmletRuntime(configuration: defaults)
        let guests = Guests(runtime: runtime, directory: directory)
        let sleeper = try guests.digest("sleeper")
        let before = residentBytes()
        var keys: [InstanceKey] = []
        var refusal: String?
        let start = now()
        for _ in 0..<count {
            do {
                // One long nanosleep, so every guest is counted as blocked once it is asleep.
                keys.append(try guests.start(sleeper, args: ["sleeper", "3600"], limits: InstanceLimits()))
            } catch {
                refusal = "\(error)"
                break
            }
        }
        print("  admission: \(keys.count) started; waiting until all are asleep")
        while runtime.statistics().guestsBlockedInHostCalls < keys.count { try await Task.sleep(for: .milliseconds(50)) }
        let seconds = Double(now() - start) / 1e9
        let statistics = runtime.statistics()
        let after = residentBytes()
        let gib = { (bytes: UInt64) in String(format: "%.2f GiB", Double(bytes) / Double(1 << 30)) }
        print(String(format: "  admission: %d asleep in %.1f s; physical memory %@", keys.count, seconds,
            gib(ProcessInfo.processInfo.physicalMemory)))
        if let refusal { print("  admission: refused after \(keys.count): \(refusal)") }
        report.add("committed admission, defaults: sleeping guests admitted of \(count)", "\(keys.count)", "\(count)")
        report.add("  budget / charged / sum of caps", "\(gib(statistics.memoryBudgetBytes)) / \(gib(statistics.memoryChargedBytes)) / \(gib(statistics.memoryReservedBytes))", "charged ≤ budget")
        report.add("  charged per guest", String(format: "%.0f KiB", Double(statistics.memoryChargedBytes) / Double(max(1, keys.count)) / 1024), "-")
        report.add("  RSS per guest", String(format: "%.1f KiB", Double(after &- before) / Double(max(1, keys.count)) / 1024), "< charged")
        report.add("  budget denials", "\(statistics.memoryBudgetDenials)", "0")
        for key in keys { try runtime.kill(key) }
        for key in keys { _ = try await runtime.wait(key); _ = try? runtime.delete(key) }

        var strict = defaults
        strict.memoryAdmission = .reserveCaps
        let reserving = try WasmletRuntime(configuration: strict)
        let digest = try reserving.loadModule(path: guests.path("sleeper")).digest
        var created = 0
        while created < count {
            do {
                try reserving.create(InstanceSpec(key: InstanceKey(namespace: "bench", id: "strict-\(created)"), moduleDigest: digest))
                created += 1
            } catch { break }
        }
        report.add("reserve-caps admission, defaults: creates admitted of \(count)", "\(created)", "budget / 128 MiB")
        for index in 0..<created { _ = try? reserving.delete(InstanceKey(namespace: "bench", id: "strict-\(index)")) }
    }
}
