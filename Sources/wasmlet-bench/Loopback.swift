import Glibc

/// Blocking TCP clients of 127.0.0.1, for the benchmarks that talk to guests' listeners.
enum Loopback {
    /// A connected socket to 127.0.0.1:port; the caller closes it.
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, rc == 0 else { if fd >= 0 { close(fd) }; throw BenchError("connect to 127.0.0.1:\(port) failed: errno \(errno)") }
        return fd
    }
}
