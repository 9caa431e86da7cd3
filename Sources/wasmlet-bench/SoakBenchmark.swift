import Foundation
import Glibc
import WasmletAPI
import WasmletClient

/// The soak: `cycles` create/start/wait/delete cycles of hello through the socket of a real
/// wasmletd (four connections at once), sampling the daemon's RSS, descriptors and threads at
/// every twentieth of the run. A daemon that leaks shows it as a curve that keeps rising; the
/// first and last tenth are printed side by side. Not in the default groups: `--only soak`.
struct SoakBenchmark {
    let wasmletd: String
    let hello: String
    let cycles: Int

    static let connections = 4
    static let samplesPerRun = 20

    struct Sample {
        var cycles: Int
        var seconds: Double
        var residentBytes: UInt64
        var descriptors: Int
        var threads: Int
    }

    func run(_ report: Report) async throws {
        guard FileManager.default.isExecutableFile(atPath: wasmletd) else {
            report.add("soak", "not measured: \(wasmletd) missing", "-")
            return
        }
        let daemon = try DaemonUnderTest(binary: wasmletd, arguments: ["--log-level", "warning"])
        defer { daemon.stop() }
        try await daemon.waitUntilReady()
        var clients: [WasmletClient] = []
        for _ in 0..<Self.connections { clients.append(try await WasmletClient.connect(socketPath: daemon.socket)) }
        let created = try await clients[0].create(.with {
            $0.namespace = "soak"; $0.id = "first"; $0.path = hello; $0.args = ["hello"]
        })
        try await clients[0].delete(namespace: "soak", id: "first")
        let digest = created.moduleDigest

        var samples = [Sample(cycles: 0, seconds: 0, residentBytes: daemon.residentBytes(), descriptors: daemon.descriptorCount(), threads: daemon.threadCount())]
        let step = max(Self.connections, cycles / Self.samplesPerRun)
        let started = now()
        var done = 0
        var failures = 0
        var firstFailure: String?
        print("  soak: \(cycles) cycles, \(Self.connections) connections, a sample every \(step)")
        while done < cycles {
            let batch = min(step, cycles - done)
            let base = done
            let results = try await withThrowingTaskGroup(of: [String].self) { group in
                for (worker, client) in clients.enumerated() {
                    group.addTask {
                        var problems: [String] = []
                        for index in stride(from: worker, to: batch, by: Self.connections) {
                            let id = "c\(base + index)"
                            _ = try await client.create(.with {
                                $0.namespace = "soak"; $0.id = id; $0.digest = digest; $0.args = ["hello"]
                                $0.limits = .with { $0.memoryBytes = DaemonBenchmark.helloMemoryCap }
                            })
                            try await client.start(namespace: "soak", id: id)
                            let exit = try await client.wait(namespace: "soak", id: id)
                            if exit.code != 0 || exit.reason != .exited { problems.append("\(id): code \(exit.code) \(exit.message)") }
                            try await client.delete(namespace: "soak", id: id)
                        }
                        return problems
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            failures += results.count
            if firstFailure == nil { firstFailure = results.first }
            done += batch
            let sample = Sample(
                cycles: done, seconds: Double(now() - started) / 1e9, residentBytes: daemon.residentBytes(),
                descriptors: daemon.descriptorCount(), threads: daemon.threadCount())
            samples.append(sample)
            print(String(format: "  %8d cycles  %7.1f s  RSS %@  fds %4d  threads %3d", sample.cycles, sample.seconds,
                         mebibytes(sample.residentBytes), sample.descriptors, sample.threads))
        }
        for client in clients { await client.close() }

        // The first and last tenth of the run (two samples each of twenty), beside each other.
        let tenth = max(1, (samples.count - 1) / 10)
        let first = Array(samples[1...tenth])
        let last = Array(samples[(samples.count - tenth)...])
        func rate(_ window: [Sample], _ before: Sample) -> Double {
            Double(window.last!.cycles - before.cycles) / (window.last!.seconds - before.seconds)
        }
        let firstRate = rate(first, samples[0])
        let lastRate = rate(last, samples[samples.count - tenth - 1])
        func describe(_ window: [Sample], _ rate: Double) -> String {
            let rss = window.map { mebibytes($0.residentBytes) }.joined(separator: ", ")
            let fds = window.map { "\($0.descriptors)" }.joined(separator: ", ")
            let threads = window.map { "\($0.threads)" }.joined(separator: ", ")
            return String(format: "%.0f cycles/s; RSS %@; fds %@; threads %@", rate, rss, fds, threads)
        }
        report.add("soak: \(cycles) create/start/wait/delete via socket, before any", describe([samples[0]], 0).replacingOccurrences(of: "0 cycles/s; ", with: ""), "-")
        report.add("soak: first tenth (to cycle \(first.last!.cycles))", describe(first, firstRate), "flat")
        report.add("soak: last tenth (to cycle \(last.last!.cycles))", describe(last, lastRate), "flat")
        report.add("soak: runs not exiting 0", failures == 0 ? "0" : "\(failures), e.g. \(firstFailure!)", "0")
        print("  soak curve (cycles, seconds, RSS KiB, fds, threads):")
        for sample in samples {
            print("    \(sample.cycles)\t\(String(format: "%.1f", sample.seconds))\t\(sample.residentBytes / 1024)\t\(sample.descriptors)\t\(sample.threads)")
        }
    }
}

extension DaemonUnderTest {
    /// Open descriptors of the daemon (entries of /proc/<pid>/fd).
    func descriptorCount() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
    }

    /// The daemon's threads (`Threads:` of /proc/<pid>/status).
    func threadCount() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Threads:") })
        else { return 0 }
        return Int(line.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "") ?? 0
    }
}
