// Small wrappers over Glibc calls used across the shim: errors with strerror text, whole-file
// reads, full writes, a monotonic clock and the stderr log.

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the errno and what the user should read.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32

    public init(_ code: Int32) { self.code = code }

    /// The current errno.
    public static var last: SystemError { SystemError(errno) }

    /// strerror text, e.g. "No such file or directory".
    public var description: String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}

enum FileIO {
    /// The whole file, or nil if it cannot be opened/read or is larger than `limit`.
    static func readFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
            guard result.count <= limit else { return nil }
        }
    }

    /// Writes every byte to a blocking descriptor; false on error.
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                write(fd, raw.baseAddress! + offset, raw.count - offset)
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }

    @discardableResult
    static func writeAll(_ fd: Int32, _ text: String) -> Bool {
        writeAll(fd, Array(text.utf8))
    }

    /// Replaces `path` with `bytes`: written to a temporary file beside it, then renamed over
    /// it, so a reader never sees half a file.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t) -> SystemError? {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { return .last }
        let written = writeAll(fd, bytes)
        let error = written ? nil : SystemError.last
        close(fd)
        if let error {
            unlink(temporary)
            return error
        }
        guard rename(temporary, path) == 0 else {
            let error = SystemError.last
            unlink(temporary)
            return error
        }
        return nil
    }

    /// mkdir -p with `mode` for the directories it creates.
    static func makeDirectories(_ path: String, mode: mode_t) -> SystemError? {
        var prefix = ""
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if mkdir(prefix, mode) != 0 && errno != EEXIST { return .last }
        }
        return nil
    }

    static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Milliseconds on the monotonic clock, for deadlines.
enum MonotonicClock {
    static func milliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}

/// One line per event on stderr (inside the serving shim: containerd's log FIFO for this bundle).
/// Errors are always written; `debug` lines only with `-debug`.
public struct ShimLog: Sendable {
    public var debugEnabled: Bool

    public init(debugEnabled: Bool) { self.debugEnabled = debugEnabled }

    public func error(_ message: String) {
        FileIO.writeAll(2, "containerd-shim-wasmlet-v1[\(getpid())]: error: \(message)\n")
    }

    public func debug(_ message: @autoclosure () -> String) {
        guard debugEnabled else { return }
        FileIO.writeAll(2, "containerd-shim-wasmlet-v1[\(getpid())]: \(message())\n")
    }
}
