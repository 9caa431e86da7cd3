import Foundation
import Testing

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

/// Runs blocking work on a thread of its own and suspends until it is done. A test that blocks
/// one of the concurrency pool's threads (two on a 2-core machine) for seconds stalls every test
/// in the process that needs the pool: the daemon's health-probe tests, which measure exactly
/// that, failed when this suite's containerd start and imports held a pool thread.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Runs a program to completion and collects its output.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], currentDirectory: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read both pipes before waiting so a chatty child cannot block on a full pipe.
    let errData = ErrorCollector(err.fileHandleForReading)
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData.wait(), as: UTF8.self))
}

/// Reads a pipe to its end on a thread of its own.
final class ErrorCollector: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    func wait() -> Data {
        done.wait()
        return data
    }
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
func systemDigest(_ path: String) throws -> String {
    let result = try runProcess("/usr/bin/sha256sum", [path])
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
