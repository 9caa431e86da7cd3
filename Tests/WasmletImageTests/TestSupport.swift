import Foundation
import Testing
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The smallest valid core module: magic and version, no sections.
let minimalModule: [UInt8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]

/// A module with a custom section, so its bytes differ from `minimalModule`.
func moduleWithCustomSection(_ name: String) -> [UInt8] {
    let nameBytes = Array(name.utf8)
    let payload = [UInt8(nameBytes.count)] + nameBytes
    return minimalModule + [0x00, UInt8(payload.count)] + payload
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion and collects its output. WasmletTestSupport's `ChildProcess`
/// (posix_spawn, waitpid polling), not Foundation's `Process`: that one's descriptors are
/// inherited by children other suites spawn at the same moment (a long-lived containerd, say),
/// and its blocking waits would hold one of the concurrency pool's two threads, stalling every
/// suite in the process. The 60 s are a hang guard.
func runProcess(_ executable: String, _ arguments: [String], currentDirectory: String? = nil) async throws -> ProcessResult {
    let base = NSTemporaryDirectory() + "/wasmlet-image-tool-\(UUID().uuidString)"
    defer {
        unlink(base + ".out")
        unlink(base + ".err")
    }
    let child = try ChildProcess(
        executable, arguments, environment: ProcessInfo.processInfo.environment, directory: currentDirectory,
        stdout: base + ".out", stderr: base + ".err")
    guard let ended = await child.wait(timeout: .seconds(60)) else {
        child.killAndReap()
        throw ChildProcess.SpawnError(description: "\(executable) \(arguments) did not exit within 60 s")
    }
    return ProcessResult(
        status: ended.status, stdout: (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "")
}

/// A fresh temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init(_ prefix: String = "wasmlet-image-test") throws {
        var template = Array(((NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/") + "\(prefix)-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// `sha256:<hex>` computed by the system's sha256sum, independently of the code under test.
func systemDigest(_ path: String) async throws -> String {
    let result = try await runProcess("/usr/bin/sha256sum", [path])
    #expect(result.status == 0, "sha256sum failed: \(result.stderr)")
    return "sha256:" + (result.stdout.split(separator: " ").first.map(String.init) ?? "")
}

func fileSize(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? -1
}

func jsonObject(_ path: String) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
    return try #require(object as? [String: Any], "\(path) is not a JSON object")
}

let systemTar = "/usr/bin/tar"
