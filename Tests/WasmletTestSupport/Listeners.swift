import Foundation
import Glibc
import WasmletFDHandoff

/// A listening TCP socket on 127.0.0.1 with a kernel-chosen port.
package func makeLoopbackListener() throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard fd >= 0, bound == 0, listen(fd, 16) == 0 else {
        close(fd)
        throw TestFailure("cannot make a loopback listener: \(String(cString: strerror(errno)))")
    }
    return fd
}

package func loopbackPort(_ fd: Int32) -> UInt16? {
    SocketFacts.localAddress(fd).flatMap { $0.split(separator: ":").last.flatMap { UInt16($0) } }
}

/// True when a TCP connect to 127.0.0.1:port succeeds (the kernel completes it from the
/// listener's backlog, whether or not anyone accepts).
package func loopbackAccepts(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// Starts a TCP connect to 127.0.0.1:port without waiting for it (non-blocking socket).
package func connectLoopbackNonblocking(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 || errno == EINPROGRESS else {
        let error = errno
        close(fd)
        throw TestFailure("connect to 127.0.0.1:\(port): \(String(cString: strerror(error)))")
    }
    return fd
}

/// Identifies an open descriptor's file, so "closed" survives the number being reused.
package func inode(_ fd: Int32) -> UInt64? {
    var info = stat()
    return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : nil
}

package func openDescriptorCount(pid: pid_t = getpid()) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}


/// Hands `count` fresh loopback listeners for (namespace, id) to the handoff socket at `path`;
/// the test's own copies are closed. Returns the reply and the listeners' ports.
package func handOffLoopbackListeners(
    count: Int, namespace: String, id: String, annotation: String, to path: String
) throws -> (ListenerHandoffReply, [UInt16]) {
    let fds = try (0..<count).map { _ in try makeLoopbackListener() }
    defer { for fd in fds { close(fd) } }
    let bound = fds.map { SocketFacts.localAddress($0) ?? "?" }
    let reply = HandoffSocket.handOff(
        ListenerHandoffMessage(namespace: namespace, id: id, annotation: annotation, bound: bound), descriptors: fds, to: path)
    return (reply, fds.compactMap(loopbackPort))
}

/// A blocking connection to 127.0.0.1:port, with 20 s send and receive timeouts (hang guards).
package func connectLoopback(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        let error = errno
        close(fd)
        throw TestFailure("connect 127.0.0.1:\(port): \(String(cString: strerror(error)))")
    }
    return fd
}

/// Sends `request` on one connection to 127.0.0.1:port and reads until the server closes it.
package func loopbackExchange(port: UInt16, _ request: String) throws -> String {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    let bytes = Array(request.utf8)
    guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw TestFailure("send failed") }
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count == 0 { break }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { throw TestFailure("recv: \(String(cString: strerror(errno))) after \(answer.count) bytes") }
        answer += buffer[0..<count]
    }
    return String(decoding: answer, as: UTF8.self)
}

/// One HTTP/1.0 GET to 127.0.0.1:port; the whole answer (the server closes the connection).
package func loopbackHTTPGet(port: UInt16, path: String = "/") throws -> String {
    try loopbackExchange(port: port, "GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n")
}

/// Whether any descriptor of process `pid` is the socket with this inode.
package func process(_ pid: pid_t, holdsSocket inode: UInt64) -> Bool {
    let directory = "/proc/\(pid)/fd"
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return entries.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0)) == "socket:[\(inode)]" }
}
