import Foundation
import Testing
import WAT
import WasmletTestSupport
@testable import WasmletRuntime

/// Shared helpers: the C guests built by scripts/build-examples.sh, WAT fixtures compiled in
/// process, temp directories and a one-call "run this guest and capture its output".
enum Fixtures {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Path of a built C guest; records a failure (not a skip) when it is missing.
    static func guest(_ name: String) throws -> String {
        let path = repositoryRoot.appendingPathComponent("examples/build/\(name).wasm").path
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("examples/build/\(name).wasm is missing: run scripts/build-examples.sh (the README's test command does)")
            throw RuntimeError(.notFound, path)
        }
        return path
    }

    static func wat(_ text: String) throws -> [UInt8] { try wat2wasm(text) }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("wasmlet-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func makeRuntime(_ adjust: (inout RuntimeConfiguration) -> Void = { _ in }) throws -> WasmletRuntime {
        var configuration = RuntimeConfiguration()
        // Tests run in parallel on two cores in debug builds: never let a slow kill fall back to
        // abandoning a thread, so an assertion that a kill landed really means it did.
        configuration.killEscalationTimeout = .seconds(120)
        adjust(&configuration)
        return try WasmletRuntime(configuration: configuration)
    }

    struct Result {
        var exit: ExitRecord
        var stdout: String
        var stderr: String
    }

    /// Tests run in parallel, so ids come from UUIDs rather than a shared counter.
    static func uniqueID() -> String { "t-\(UUID().uuidString)" }

    /// Runs a module to exit with stdout and stderr captured in files.
    static func run(
        _ runtime: WasmletRuntime, digest: String, args: [String] = ["guest"], env: [String: String] = [:],
        preopens: [PreopenSpec] = [], stdin: String? = nil, limits: InstanceLimits = InstanceLimits()
    ) async throws -> Result {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("stdout").path
        let err = directory.appendingPathComponent("stderr").path
        let spec = InstanceSpec(
            key: InstanceKey(namespace: "test", id: uniqueID()), moduleDigest: digest, args: args, environment: env,
            preopens: preopens, stdio: StdioSpec(stdin: stdin, stdout: out, stderr: err), limits: limits)
        let exit = try await runtime.run(spec)
        let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        return Result(exit: exit, stdout: stdout, stderr: stderr)
    }

    static func run(_ runtime: WasmletRuntime, guest name: String, args: [String] = [], env: [String: String] = [:],
                    preopens: [PreopenSpec] = [], stdin: String? = nil, limits: InstanceLimits = InstanceLimits()) async throws -> Result {
        let module = try runtime.loadModule(path: try guest(name))
        return try await run(runtime, digest: module.digest, args: [name] + args, env: env, preopens: preopens, stdin: stdin, limits: limits)
    }
}
