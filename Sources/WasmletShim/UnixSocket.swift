// Unix stream sockets through Glibc: connect with a deadline, listen, non-blocking mode.

#if canImport(Glibc)
import Glibc
#endif

enum UnixSocket {
    /// sun_path holds 108 bytes including the NUL.
    static let maxPathBytes = 107

    /// Accepts "unix:///path" as well as a bare path (containerd passes both forms around).
    static func path(fromAddress address: String) -> String {
        address.hasPrefix("unix://") ? String(address.dropFirst("unix://".count)) : address
    }

    private static func makeAddress(_ path: String) -> sockaddr_un? {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxPathBytes else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (offset, byte) in bytes.enumerated() { raw[offset] = byte }
            raw[bytes.count] = 0
        }
        return address
    }

    private static func newSocket() -> Int32 {
        socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    }

    /// Connects to `path` and returns a NON-BLOCKING descriptor. A Unix-socket connect either
    /// completes at once or fails at once, except when the listener's backlog is full (EAGAIN):
    /// then it is retried every few milliseconds until `timeoutMilliseconds` (0: one attempt).
    static func connect(path: String, timeoutMilliseconds: Int64) -> Result<Int32, SystemError> {
        guard var address = makeAddress(path) else { return .failure(SystemError(ENAMETOOLONG)) }
        let deadline = MonotonicClock.milliseconds() + timeoutMilliseconds
        while true {
            let fd = newSocket()
            guard fd >= 0 else { return .failure(.last) }
            let result = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if result == 0 { return .success(fd) }
            let error = SystemError.last
            close(fd)
            guard error.code == EAGAIN || error.code == EINTR,
                MonotonicClock.milliseconds() < deadline
            else { return .failure(error) }
            usleep(5000)
        }
    }

    /// A non-blocking listening socket bound to `path` (which must not exist).
    static func listen(path: String, backlog: Int32 = 128) -> Result<Int32, SystemError> {
        guard var address = makeAddress(path) else { return .failure(SystemError(ENAMETOOLONG)) }
        let fd = newSocket()
        guard fd >= 0 else { return .failure(.last) }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let error = SystemError.last
            close(fd)
            return .failure(error)
        }
        return .success(fd)
    }

    /// Accepts one pending connection as a non-blocking descriptor: .success(nil) when none is
    /// pending, .failure when accept failed otherwise (EMFILE, ENFILE, ENOBUFS, ENOMEM: the
    /// connection stays pending, and the listener stays readable).
    static func accept(listener: Int32) -> Result<Int32?, SystemError> {
        while true {
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                setNonBlocking(fd, true)
                return .success(fd)
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .success(nil)
            // The peer gave up before we took it: nothing to back off from.
            case ECONNABORTED, EPROTO: continue
            default: return .failure(SystemError.last)
            }
        }
    }

    static func setNonBlocking(_ fd: Int32, _ on: Bool) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { return }
        _ = fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
    }

    /// (device, inode) of a file, to tell our own socket file from a successor's.
    static func fileIdentity(_ path: String) -> (UInt64, UInt64)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }
}
