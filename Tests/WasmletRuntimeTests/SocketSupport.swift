import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

/// The test side of socket tests: real client sockets on loopback, and WAT guests built from
/// a list of checks.
enum SocketSupport {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs blocking socket I/O on a thread of its own, so it never holds one of Swift
    /// concurrency's few cooperative threads (other tests' awaits would stall behind it).
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// A blocking client connection to 127.0.0.1:port. Receives carry a 60 s timeout as a hang
    /// guard only (a test that needs a reply waits for it; none asserts on time).
    static func connect(port: UInt16, address: String = "127.0.0.1") throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let error = errno
            close(fd)
            throw Failure(description: "connect to \(address):\(port): \(String(cString: strerror(error)))")
        }
        return fd
    }

    /// Whether a connection to the port is refused now.
    static func isRefused(port: UInt16) -> Bool {
        do {
            let fd = try connect(port: port)
            close(fd)
            return false
        } catch {
            return "\(error)".contains("Connection refused")
        }
    }

    static func send(_ fd: Int32, _ text: String) throws {
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    /// Reads until end-of-file (or `count` bytes when given).
    static func receive(_ fd: Int32, count: Int? = nil) throws -> String {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while count.map({ result.count < $0 }) ?? true {
            let want = count.map { min(buffer.count, $0 - result.count) } ?? buffer.count
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, want, 0) }
            if n == 0 { break }
            guard n > 0 else { throw Failure(description: "recv: \(String(cString: strerror(errno)))") }
            result += buffer[0..<n]
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// One HTTP/1.0 GET; returns the whole response.
    static func httpGet(port: UInt16, path: String) throws -> String {
        let fd = try connect(port: port)
        defer { close(fd) }
        try send(fd, "GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return try receive(fd)
    }

    /// A free port now (bound and released; good enough for tests that need a fixed number).
    static func freePort() throws -> UInt16 {
        let socket = try ListeningSocket.open(ListenerSpec(address: "127.0.0.1", port: 0))
        return socket.bound.port
    }

    /// Inodes of TCP sockets whose local port is `port` (listener and accepted connections).
    static func inodesWithLocalPort(_ port: UInt16) -> Set<UInt64> {
        Set(TCPSocketEntry.all().filter { $0.localPort == port && $0.inode != 0 }.map(\.inode))
    }

    /// How many of this process's descriptors are TCP sockets with local port `port`.
    static func descriptorsOnPort(_ port: UInt16) -> Int { tcpDescriptors(onLocalPort: port) }

    // MARK: WAT guests

    static let imports = """
          (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "sock_shutdown" (func $shutdown (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $setflags (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_filestat_get" (func $filestat (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        """

    /// A guest whose `_start` runs `body`; memory is one page, with helpers:
    /// `$iov (ptr len) -> iovec address 1024` builds one iovec, `$check (value expected step)`
    /// exits with `step` when they differ. Conventions: 0..255 scratch results, 1024 the iovec,
    /// 2048.. buffers, 4096.. poll subscriptions, 8192.. poll events.
    static func guest(_ body: String) -> String {
        """
        (module
        \(imports)
          (memory (export "memory") 1)
          (func $iov (param $ptr i32) (param $len i32) (result i32)
            (i32.store (i32.const 1024) (local.get $ptr))
            (i32.store (i32.const 1028) (local.get $len))
            (i32.const 1024))
          (func $check (param $value i32) (param $expected i32) (param $step i32)
            (if (i32.ne (local.get $value) (local.get $expected)) (then (call $exit (local.get $step)))))
          ;; writes one byte to stdout (progress marks the test waits for)
          (func $mark (param $byte i32)
            (i32.store8 (i32.const 3000) (local.get $byte))
            (i32.store (i32.const 3008) (i32.const 3000))
            (i32.store (i32.const 3012) (i32.const 1))
            (drop (call $write (i32.const 1) (i32.const 3008) (i32.const 1) (i32.const 3016))))
          ;; a FD_READ (tag 1) or FD_WRITE (tag 2) subscription at 4096 + 48*index
          (func $subfd (param $index i32) (param $tag i32) (param $fd i32)
            (local $base i32)
            (local.set $base (i32.add (i32.const 4096) (i32.mul (local.get $index) (i32.const 48))))
            (i64.store (local.get $base) (i64.extend_i32_u (i32.add (local.get $index) (i32.const 100))))
            (i32.store8 (i32.add (local.get $base) (i32.const 8)) (local.get $tag))
            (i32.store (i32.add (local.get $base) (i32.const 16)) (local.get $fd)))
          ;; a relative CLOCK_MONOTONIC subscription of `ns` at index
          (func $subclock (param $index i32) (param $ns i64)
            (local $base i32)
            (local.set $base (i32.add (i32.const 4096) (i32.mul (local.get $index) (i32.const 48))))
            (i64.store (local.get $base) (i64.extend_i32_u (i32.add (local.get $index) (i32.const 100))))
            (i32.store8 (i32.add (local.get $base) (i32.const 8)) (i32.const 0))
            (i32.store (i32.add (local.get $base) (i32.const 16)) (i32.const 1))
            (i64.store (i32.add (local.get $base) (i32.const 24)) (local.get $ns))
            (i32.store16 (i32.add (local.get $base) (i32.const 40)) (i32.const 0)))
          (func (export "_start")
        \(body)
          ))
        """
    }
}
