#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// File-system side of Unix socket addresses: normalising "unix://" addresses, checking the
/// length limit, telling a stale socket file from a live server. Synchronous, blocking only for
/// a local connect(2); call it before handing the path to NIO.
enum UnixSocketPath {
    /// `sun_path` holds 108 bytes including the terminating NUL.
    static let maxPathBytes = 107

    /// Accepts a bare path or a containerd-style "unix:///path" address.
    static func normalize(_ address: String) -> String {
        if address.hasPrefix("unix://") { return String(address.dropFirst("unix://".count)) }
        return address
    }

    static func validate(_ path: String) throws(TTRPCError) {
        guard !path.isEmpty else { throw .invalidArgument("empty unix socket path") }
        let length = path.utf8.count
        guard length <= maxPathBytes else {
            throw .invalidArgument(
                "unix socket path \(path) is \(length) bytes long; the limit is \(maxPathBytes)")
        }
    }

    /// Makes `path` free for bind(2): nothing there is fine; a socket file nobody listens on
    /// (left by a crashed server) is removed; a live server or a non-socket file is an error.
    static func prepareForBind(_ path: String) throws(TTRPCError) {
        try validate(path)
        var info = stat()
        if lstat(path, &info) != 0 {
            let error = errno
            if error == ENOENT { return }
            throw .unavailable("cannot inspect \(path): \(describe(errno: error))")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw .failedPrecondition("\(path) exists and is not a socket; refusing to replace it")
        }
        switch probe(path) {
        case .listening:
            throw .alreadyExists("another server is already listening on \(path)")
        case .refused:
            guard unlink(path) == 0 || errno == ENOENT else {
                throw .unavailable("cannot remove stale socket \(path): \(describe(errno: errno))")
            }
        case .failed(let error):
            throw .unavailable(
                "cannot tell whether a server is listening on \(path) (\(describe(errno: error))); not replacing it")
        }
    }

    enum ProbeResult: Equatable {
        case listening
        case refused
        case failed(errno: Int32)
    }

    /// Tries a connect(2) to `path`.
    static func probe(_ path: String) -> ProbeResult {
        #if canImport(Darwin)
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        #endif
        guard fd >= 0 else { return .failed(errno: errno) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result == 0 { return .listening }
        let error = errno
        return error == ECONNREFUSED ? .refused : .failed(errno: error)
    }

    static func describe(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
