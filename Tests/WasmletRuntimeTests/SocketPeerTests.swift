import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

/// Peers that misbehave: a client that resets its connection, and clients of a guest that
/// never accepts. Each gets an ordinary errno or a refused connection; the guest and the
/// runtime (the daemon's process) carry on.
@Suite struct SocketPeerTests {
    /// A reset wakes a guest blocked in recv with ECONNRESET; its next send gets EPIPE, never
    /// a SIGPIPE that would end the daemon's process (this test's).
    @Test func aResetWakesABlockedRecvWithAnErrno() async throws {
        let runtime = try Fixtures.makeRuntime()
        let digest = try SocketTests.wat(runtime, """
                (local $c i32)
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 0) (i32.const 10))
                (local.set $c (i32.load (i32.const 0)))
                ;; blocks until the peer's reset: ECONNRESET (15)
                (call $check (call $recv (local.get $c) (call $iov (i32.const 2048) (i32.const 8)) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)) (i32.const 15) (i32.const 11))
                ;; the connection is gone: EPIPE (64)
                (call $check (call $send (local.get $c) (call $iov (i32.const 2048) (i32.const 4)) (i32.const 1) (i32.const 0) (i32.const 32)) (i32.const 64) (i32.const 12))
                (call $check (call $close (local.get $c)) (i32.const 0) (i32.const 13))
                (call $exit (i32.const 0))
            """)
        var client: Int32 = -1
        let started = try SocketTests.start(runtime, digest: digest) { ports in
            client = try SocketSupport.connect(port: ports[0])
        }
        // Accepted (queued before the start) and now waiting in recv.
        try await SocketTests.waitUntilBlocked(runtime)
        Self.reset(client)
        let exit = try await runtime.wait(started.key)
        #expect(exit.code == 0, "failed at step \(exit.code)")
        #expect(SocketSupport.descriptorsOnPort(started.ports[0]) == 0)
    }

    /// One client resetting does not disturb the guest's other clients (C echoserver, poll()).
    @Test func aResettingClientLeavesTheOthersServed() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("echoserver"))
        let started = try SocketTests.start(runtime, digest: module.digest, args: ["echoserver"])
        let port = started.ports[0]
        let steady = try await SocketSupport.blocking { () throws -> Int32 in
            let steady = try SocketSupport.connect(port: port)
            try SocketSupport.send(steady, "a")
            guard try SocketSupport.receive(steady, count: 1) == "a" else { throw SocketSupport.Failure(description: "no echo") }
            for _ in 0..<10 {
                let rude = try SocketSupport.connect(port: port)
                try SocketSupport.send(rude, "b")
                guard try SocketSupport.receive(rude, count: 1) == "b" else { throw SocketSupport.Failure(description: "no echo") }
                Self.reset(rude)
            }
            return steady
        }
        defer { close(steady) }
        // The guest closed the reset ones: it holds the listener and the steady client only.
        #expect(try await eventually(every: .milliseconds(5)) { SocketSupport.descriptorsOnPort(port) == 2 })
        let echoed = try await SocketSupport.blocking { () throws -> String in
            try SocketSupport.send(steady, "still here")
            return try SocketSupport.receive(steady, count: 10)
        }
        #expect(echoed == "still here")
        try runtime.kill(started.key)
        #expect(try await runtime.wait(started.key).reason == .killed)
    }

    /// A guest that never accepts: its connections queue in the kernel's backlog (holding no
    /// descriptor of the daemon's), connections past the backlog are not completed, another
    /// guest is served meanwhile, and once the guest is killed every one of them is refused or
    /// reset, as is any new one.
    @Test(.timeLimit(.minutes(2))) func aGuestThatNeverAcceptsQueuesThenRefuses() async throws {
        let runtime = try Fixtures.makeRuntime()
        // Waits in poll_oneoff on a one-hour clock; the listener at fd 3 is never touched.
        let idle = try SocketTests.wat(runtime, """
                (call $subclock (i32.const 0) (i64.const 3600000000000))
                (drop (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 32)))
                (call $exit (i32.const 0))
            """)
        let deaf = try SocketTests.start(runtime, digest: idle)
        let port = deaf.ports[0]
        let echo = try runtime.loadModule(path: Fixtures.guest("echoserver"))
        let other = try SocketTests.start(runtime, digest: echo.digest, args: ["echoserver"])
        try await SocketTests.waitUntilBlocked(runtime, count: 2)

        // Past the backlog (1,024, and the kernel queues one more) by 100.
        let count = Int(ListeningSocket.backlog) + 101
        let clients = try await SocketSupport.blocking { try (0..<count).map { _ in try connectLoopbackNonblocking(port: port) } }
        defer { for client in clients { close(client) } }
        // Readings of a thousand sockets' table run off the concurrency pool, as the I/O does.
        let queued = {
            try await SocketSupport.blocking { TCPSocketEntry.all().first { $0.localPort == port && $0.state == .listen }?.receiveQueue ?? 0 }
        }
        #expect(
            try await eventually(every: .milliseconds(50)) { try await queued() >= UInt32(ListeningSocket.backlog) },
            "accept queue: \(String(describing: TCPSocketEntry.all().first { $0.localPort == port && $0.state == .listen }?.receiveQueue))")
        #expect(SocketSupport.descriptorsOnPort(port) == 1, "queued connections hold no descriptor: only the listener")
        let pending = try await SocketSupport.blocking { TCPSocketEntry.all().filter { $0.remotePort == port && $0.state == .synSent }.count }
        #expect(pending > 0, "connections past the backlog are not completed")

        // The other guest is served all along.
        let echoed = try await SocketSupport.blocking { () throws -> String in
            let client = try SocketSupport.connect(port: other.ports[0])
            defer { close(client) }
            try SocketSupport.send(client, "ping")
            return try SocketSupport.receive(client, count: 4)
        }
        #expect(echoed == "ping")

        try runtime.kill(deaf.key)
        #expect(try await runtime.wait(deaf.key).reason == .killed)
        // Queued ones were reset when the listener closed; a client whose handshake the full
        // queue dropped learns of it when it sends; one still connecting is refused when its
        // SYN is retransmitted (about a second later).
        for client in clients { _ = Glibc.send(client, "x", 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        let unresolved = { try await SocketSupport.blocking { clients.filter { !Self.hasFailed($0) }.count } }
        #expect(
            try await eventually(timeout: .seconds(60), every: .milliseconds(50)) { try await unresolved() == 0 },
            "\(clients.filter { !Self.hasFailed($0) }.count) of \(count) connections neither reset nor refused")
        #expect(SocketSupport.isRefused(port: port), "a new connection is refused")
        try runtime.kill(other.key)
        _ = try await runtime.wait(other.key)
    }

    // MARK: Helpers

    /// Closes with SO_LINGER 0: the kernel sends RST instead of FIN.
    static func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    /// Whether the connection has ended in an error (ECONNRESET, ECONNREFUSED, ...).
    static func hasFailed(_ fd: Int32) -> Bool {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        // SO_ERROR reads and clears a pending error; a reset one also shows as POLLHUP/POLLERR.
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error != 0 { return true }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        return entry.revents & Int16(POLLERR | POLLHUP) != 0
    }
}
