import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The directory holding this test binary, where SwiftPM also puts `wasmletctl` (and `wasmletd`).
func productsDirectory() -> String {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return (executable as NSString).deletingLastPathComponent
}

var wasmletctlPath: String { productsDirectory() + "/wasmletctl" }
var wasmletdPath: String { productsDirectory() + "/wasmletd" }

/// The repository root (for examples/build/*.wasm).
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A short unique path under /tmp (Unix socket paths are limited to 107 bytes).
func temporarySocketPath(_ tag: String = "wctl") -> String {
    "/tmp/\(tag)-\(getpid())-\(UInt32.random(in: .min ... .max)).sock"
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// A started child process whose stdout/stderr go to temporary files.
final class Child: @unchecked Sendable {
    let process = Process()
    private let outPath: String
    private let errPath: String

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
         currentDirectory: String? = nil) throws {
        let base = NSTemporaryDirectory() + "wctl-\(UUID().uuidString)"
        outPath = base + ".out"
        errPath = base + ".err"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Waits up to `timeout` for exit (then kills it and records an issue).
    func finish(timeout: Duration = .seconds(30)) async -> CommandResult {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            Issue.record("\(process.executableURL!.lastPathComponent) \(process.arguments ?? []) did not exit in \(timeout)")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let result = CommandResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
        return result
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }
}

/// Runs `wasmletctl ARGS...` to completion. The environment is this process's minus
/// WASMLET_SOCKET, plus `environment`.
func wasmletctl(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(30))
    async throws -> CommandResult
{
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "WASMLET_SOCKET")
    env.merge(environment) { $1 }
    return try await Child(wasmletctlPath, arguments, environment: env, currentDirectory: repositoryRoot)
        .finish(timeout: timeout)
}
