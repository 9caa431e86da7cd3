import Foundation
import Glibc

/// The kernel's view of TCP sockets (/proc/net/tcp and tcp6), for tests that must see what a
/// client cannot: which sockets a process holds, how many connections wait in a listener's
/// accept queue, which connects the kernel has not completed.
///
/// The tables are read in several chunks, not as one snapshot: while sockets come and go, one
/// can be listed twice or not at all. Count distinct inodes, and wait for a state rather than
/// trust one reading. Parsing ten thousand entries takes a while: poll off the concurrency pool.
package struct TCPSocketEntry: Sendable, Equatable {
    /// /proc/net/tcp's `st`: 01 established, 02 syn-sent, 0A listen, ...
    package enum State: UInt8, Sendable {
        case established = 0x01, synSent = 0x02, synReceived = 0x03, finWait1 = 0x04, finWait2 = 0x05
        case timeWait = 0x06, close = 0x07, closeWait = 0x08, lastAck = 0x09, listen = 0x0A, closing = 0x0B
    }
    package var localPort: UInt16
    package var remotePort: UInt16
    package var state: State?
    /// For a listener: the connections in its accept queue (completed, not yet accepted).
    package var receiveQueue: UInt32
    /// 0 for a socket no descriptor holds any more (orphaned, or in TIME_WAIT).
    package var inode: UInt64

    /// Every TCP socket of this network namespace.
    package static func all() -> [TCPSocketEntry] {
        var result: [TCPSocketEntry] = []
        for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
            guard let text = readProcFile(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 9, let local = port(fields[1]), let remote = port(fields[2]),
                    let state = UInt8(fields[3], radix: 16), let queue = fields[4].split(separator: ":").last,
                    let receiveQueue = UInt32(queue, radix: 16), let inode = UInt64(fields[9])
                else { continue }
                result.append(
                    TCPSocketEntry(
                        localPort: local, remotePort: remote, state: State(rawValue: state), receiveQueue: receiveQueue,
                        inode: inode))
            }
        }
        return result
    }

    private static func port(_ address: Substring) -> UInt16? {
        guard let colon = address.lastIndex(of: ":") else { return nil }
        return UInt16(address[address.index(after: colon)...], radix: 16)
    }
}

/// The socket inode of each descriptor of process `pid` that is a socket.
package func socketInodes(of pid: pid_t = getpid()) -> [UInt64] {
    let directory = "/proc/\(pid)/fd"
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return entries.compactMap { entry -> UInt64? in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(entry)"),
            target.hasPrefix("socket:[")
        else { return nil }
        return UInt64(target.dropFirst(8).dropLast())
    }
}

/// How many descriptors of process `pid` are TCP sockets with local port `port`: a listener and
/// the connections accepted from it (a client's own end has the port as its remote one).
package func tcpDescriptors(onLocalPort port: UInt16, of pid: pid_t = getpid()) -> Int {
    let onPort = Set(TCPSocketEntry.all().filter { $0.localPort == port && $0.inode != 0 }.map(\.inode))
    return socketInodes(of: pid).filter { onPort.contains($0) }.count
}

/// A procfs file read to its end (Foundation stops after the first page of these).
package func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}
