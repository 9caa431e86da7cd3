import Foundation
import Testing
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

var wasmletctlPath: String { productsDirectory() + "/wasmletctl" }

/// A short unique path under /tmp (Unix socket paths are limited to 107 bytes).
func temporarySocketPath(_ tag: String = "wctl") -> String {
    "/tmp/\(tag)-\(getpid())-\(UInt32.random(in: .min ... .max)).sock"
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// A started child process whose stdout/stderr go to temporary files: a ChildProcess
/// (posix_spawn and waitpid; see there why not Foundation's Process).
final class Child: @unchecked Sendable {
    let child: ChildProcess
    private let outPath: String
    private let errPath: String

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
         currentDirectory: String? = nil, stdin: String? = "/dev/null") throws {
        let base = NSTemporaryDirectory() + "wctl-\(UUID().uuidString)"
        outPath = base + ".out"
        errPath = base + ".err"
        child = try ChildProcess(
            executable, arguments, environment: environment ?? ProcessInfo.processInfo.environment,
            directory: currentDirectory, stdin: stdin, stdout: outPath, stderr: errPath)
    }

    deinit { child.killAndReap() }

    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
    /// stdout as bytes, for output that is not text (read before `finish`, which removes it).
    var stdoutBytes: [UInt8] { FileManager.default.contents(atPath: outPath).map { [UInt8]($0) } ?? [] }

    /// Waits up to `timeout` for exit (then kills it and records an issue). `status` is the
    /// exit code, or minus the signal number.
    func finish(timeout: Duration = .seconds(30)) async -> CommandResult {
        var ended = await child.wait(timeout: timeout)
        if ended == nil {
            Issue.record("\((child.executable as NSString).lastPathComponent) \(child.arguments) did not exit in \(timeout)")
            ended = child.killAndReap()
        }
        let result = CommandResult(status: ended?.status ?? -1, stdout: stdout, stderr: stderr)
        unlink(outPath)
        unlink(errPath)
        return result
    }

    func signal(_ number: Int32) { child.signal(number) }
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
