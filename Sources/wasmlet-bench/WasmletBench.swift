import ArgumentParser
import Foundation
import Glibc
import WasmletRuntime

/// Benchmarks for the runtime core. Every figure is measured in this run; peers (wasmtime,
/// wasm3, native) are run in the same invocation so ratios compare like with like.
@main
struct WasmletBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wasmlet-bench",
        abstract: "Measure start latency, density, kill latency, fuel overhead and compute speed of the wasmlet runtime.")

    @Option(help: "Directory with the built example guests (scripts/build-examples.sh).")
    var examples = "examples/build"

    @Option(help: "Comma-separated groups to run: start,density,admission,listeners,kill,fuel,fairness,compute,spawn,api,metrics (default: all), and soak (only when named).")
    var only: String?

    @Option(help: "Concurrent sleeping instances for the density and admission figures.")
    var density = 10_000

    @Option(help: "Idle httpd instances, each with a listener, for the listeners figure.")
    var listeners = 1_000

    @Option(help: "Repetitions for latency figures.")
    var runs = 2_000

    @Option(help: "Create/start/wait/delete cycles for the soak group (--only soak; not run by default).")
    var soakCycles = 200_000

    @Option(help: "Write the summary table (Markdown) to this file.")
    var markdown: String?

    @Option(help: "The wasmletd binary for the api group (default: next to wasmlet-bench).")
    var wasmletd: String?

    @Option(help: "The wasmletctl binary for the api group (default: next to wasmlet-bench).")
    var wasmletctl: String?

    func run() async throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)

        let groups = Set((only ?? "start,density,admission,listeners,kill,fuel,fairness,compute,spawn,api,metrics").split(separator: ",").map(String.init))
        let report = Report()
        var configuration = RuntimeConfiguration()
        configuration.maxInstances = max(configuration.maxInstances, density + 100)
        configuration.memoryBudgetBytes = UInt64(density + 100) * (1 << 20) * 4
        let runtime = try WasmletRuntime(configuration: configuration)
        let guests = Guests(runtime: runtime, directory: examples)
        print("wasmlet-bench: \(ProcessInfo.processInfo.activeProcessorCount) cores, examples in \(examples)")

        if groups.contains("phases") { try PhaseBenchmark(guests: guests).run(report) }
        if groups.contains("start") { try await StartBenchmark(guests: guests, runs: runs).run(report) }
        if groups.contains("spawn") { try await SpawnBenchmark(guests: guests, runs: min(runs, 500)).run(report) }
        if groups.contains("kill") { try await KillBenchmark(guests: guests, runs: min(runs, 300)).run(report) }
        if groups.contains("fuel") { try FuelBenchmark(guests: guests).run(report) }
        if groups.contains("fairness") { try await FairnessBenchmark(guests: guests).run(report) }
        if groups.contains("compute") { try ComputeBenchmark(guests: guests).run(report) }
        if groups.contains("density") { try await DensityBenchmark(guests: guests, count: density).run(report) }
        if groups.contains("admission") { try await AdmissionBenchmark(directory: examples, count: density).run(report) }
        if groups.contains("listeners") { try await IdleListenerBenchmark(guests: guests, count: listeners).run(report) }
        if groups.contains("api") {
            let products = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent().path
            let hello = URL(fileURLWithPath: guests.path("hello")).standardizedFileURL.path
            try await DaemonBenchmark(
                wasmletd: wasmletd ?? "\(products)/wasmletd", wasmletctl: wasmletctl ?? "\(products)/wasmletctl",
                hello: hello, runs: runs, instances: density
            ).run(report)
        }

        if groups.contains("soak") {
            let products = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent().path
            try await SoakBenchmark(
                wasmletd: wasmletd ?? "\(products)/wasmletd",
                hello: URL(fileURLWithPath: guests.path("hello")).standardizedFileURL.path, cycles: soakCycles
            ).run(report)
        }

        if groups.contains("metrics") {
            let products = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).deletingLastPathComponent().path
            try await MetricsBenchmark(
                wasmletd: wasmletd ?? "\(products)/wasmletd",
                hello: URL(fileURLWithPath: guests.path("hello")).standardizedFileURL.path,
                sleeper: URL(fileURLWithPath: guests.path("sleeper")).standardizedFileURL.path, instances: density
            ).run(report)
        }

        print("\n" + report.markdown())
        if let markdown { try report.markdown().write(toFile: markdown, atomically: true, encoding: .utf8) }
    }
}

/// The example guests, loaded once.
struct Guests: Sendable {
    let runtime: WasmletRuntime
    let directory: String

    func path(_ name: String) -> String { "\(directory)/\(name).wasm" }

    func digest(_ name: String) throws -> String {
        try runtime.loadModule(path: path(name)).digest
    }

    private static let counter = Counter()

    /// Runs a guest to exit with stdio to nothing.
    func run(_ digest: String, args: [String] = ["guest"], limits: InstanceLimits = InstanceLimits()) async throws -> ExitRecord {
        let key = InstanceKey(namespace: "bench", id: "i\(Self.counter.next())")
        return try await runtime.run(InstanceSpec(key: key, moduleDigest: digest, args: args, limits: limits))
    }

    /// Creates and starts a guest, returning its key.
    func start(_ digest: String, args: [String], limits: InstanceLimits = InstanceLimits(memoryBytes: 1 << 20)) throws -> InstanceKey {
        let key = InstanceKey(namespace: "bench", id: "i\(Self.counter.next())")
        try runtime.create(InstanceSpec(key: key, moduleDigest: digest, args: args, limits: limits))
        try runtime.start(key)
        return key
    }

    func waitUntilRunning(_ key: InstanceKey) async throws {
        while try runtime.inspect(key).state == .created { try await Task.sleep(for: .microseconds(200)) }
    }
}

final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}
