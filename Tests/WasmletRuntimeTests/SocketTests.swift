import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

/// Pre-opened TCP listeners and the WASI socket calls, with real clients on loopback.
@Suite struct SocketTests {
    struct Started {
        var key: InstanceKey
        var ports: [UInt16]
        var listeners: [BoundListener]
        var stdout: String
    }

    static let loopback = ListenerSpec(address: "127.0.0.1", port: 0)

    /// Creates and starts a guest with listeners; stdout goes to a file.
    static func start(
        _ runtime: WasmletRuntime, digest: String, args: [String] = ["guest"], listeners: [ListenerSpec] = [loopback],
        preopens: [PreopenSpec] = [], stdin: String? = nil, limits: InstanceLimits = InstanceLimits(),
        beforeStart: ([UInt16]) throws -> Void = { _ in }
    ) throws -> Started {
        let directory = try Fixtures.temporaryDirectory()
        let stdout = directory.appendingPathComponent("stdout").path
        let key = InstanceKey(namespace: "sockets", id: Fixtures.uniqueID())
        let snapshot = try runtime.create(
            InstanceSpec(
                key: key, moduleDigest: digest, args: args, preopens: preopens,
                stdio: StdioSpec(stdin: stdin, stdout: stdout, stderr: directory.appendingPathComponent("stderr").path),
                limits: limits, listeners: listeners))
        let ports = snapshot.listeners.map(\.boundPort)
        try beforeStart(ports)
        try runtime.start(key)
        return Started(key: key, ports: ports, listeners: snapshot.listeners, stdout: stdout)
    }

    static func wat(_ runtime: WasmletRuntime, _ body: String) throws -> String {
        try runtime.loadModule(bytes: Fixtures.wat(SocketSupport.guest(body))).digest
    }

    static func output(_ started: Started) -> String { (try? String(contentsOfFile: started.stdout, encoding: .utf8)) ?? "" }

    /// Waits until exactly `count` guests of this runtime wait in a host call (each test has a
    /// runtime of its own, so this is this test's guest).
    static func waitUntilBlocked(_ runtime: WasmletRuntime, count: Int = 1) async throws {
        #expect(try await eventually(every: .milliseconds(5)) { runtime.statistics().guestsBlockedInHostCalls == count })
    }

    // MARK: C guests (Debian's wasi-libc)

    @Test func echoServerServesConcurrentClientsWithPoll() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("echoserver"))
        let started = try Self.start(runtime, digest: module.digest, args: ["echoserver"])
        let port = try #require(started.ports.first)
        #expect(port != 0)
        // 100 clients connected at once; each message is echoed while all are open.
        let wrong = try await SocketSupport.blocking { () throws -> Int in
            let clients = try (0..<100).map { _ in try SocketSupport.connect(port: port) }
            defer { for client in clients { close(client) } }
            for (index, client) in clients.enumerated() { try SocketSupport.send(client, "client \(index) says hi\n") }
            var wrong = 0
            for (index, client) in clients.enumerated().reversed() {
                let expected = "client \(index) says hi\n"
                if try SocketSupport.receive(client, count: expected.utf8.count) != expected { wrong += 1 }
            }
            return wrong
        }
        #expect(wrong == 0)
        try runtime.kill(started.key)
        let exit = try await runtime.wait(started.key)
        #expect(exit.reason == .killed)
        #expect(SocketSupport.isRefused(port: port), "the port is closed once the guest exited")
        #expect(try runtime.inspect(started.key).listeners.first?.boundPort == port, "Inspect still shows where it listened")
    }

    /// wasi-libc scans fds from 3 with fd_prestat_get and exits 71 on any error but EBADF: the
    /// listeners come after every directory, so it finds all of them, and the guest finds its
    /// listeners through WASMLET_LISTEN_FDS.
    @Test func wasiLibcFindsDirectoriesAndListenersTogether() async throws {
        let runtime = try Fixtures.makeRuntime()
        let first = try Fixtures.temporaryDirectory()
        let docroot = try Fixtures.temporaryDirectory()
        try "served from a preopen\n".write(to: docroot.appendingPathComponent("page.txt"), atomically: true, encoding: .utf8)
        let module = try runtime.loadModule(path: Fixtures.guest("httpd"))
        let started = try Self.start(
            runtime, digest: module.digest, args: ["httpd", "/srv"], listeners: [Self.loopback, Self.loopback],
            preopens: [PreopenSpec(guestPath: "/data", hostPath: first.path), PreopenSpec(guestPath: "/srv", hostPath: docroot.path)])
        #expect(started.listeners.map(\.guestFd) == [5, 6])
        #expect(started.listeners.allSatisfy { $0.boundAddress == "127.0.0.1:\($0.boundPort)" })
        let port = started.ports[0]
        let page = try SocketSupport.httpGet(port: port, path: "/")
        #expect(page.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(page.hasSuffix("\r\n\r\nhello from wasmlet httpd\n"))
        let file = try SocketSupport.httpGet(port: port, path: "/files/page.txt")
        #expect(file.hasSuffix("\r\n\r\nserved from a preopen\n"), "the second preopen, after the first, was found")
        #expect(try SocketSupport.httpGet(port: port, path: "/files/missing").hasPrefix("HTTP/1.1 404"))
        #expect(try SocketSupport.httpGet(port: port, path: "/exit").hasSuffix("bye\n"))
        let exit = try await runtime.wait(started.key)
        #expect(exit.reason == .exited)
        #expect(exit.code == 0, "not 71: the preopen scan did not fail on a listener")
    }

    @Test func listenFdsVariableNamesTheListenersInOrder() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("echo"))
        // One listener and no directory: fd 3, as under `wasmtime -S tcplisten`.
        let alone = try Self.start(runtime, digest: module.digest, args: ["echo"])
        #expect(try await runtime.wait(alone.key).code == 0)
        #expect(Self.output(alone).contains("env WASMLET_LISTEN_FDS=3\n"))
        #expect(alone.listeners.map(\.guestFd) == [3])
        let directory = try Fixtures.temporaryDirectory()
        let both = try Self.start(
            runtime, digest: module.digest, args: ["echo"], listeners: [Self.loopback, Self.loopback, Self.loopback],
            preopens: [PreopenSpec(guestPath: "/a", hostPath: directory.path), PreopenSpec(guestPath: "/b", hostPath: directory.path)])
        #expect(try await runtime.wait(both.key).code == 0)
        #expect(Self.output(both).contains("env WASMLET_LISTEN_FDS=5,6,7\n"))
        let none = try await Fixtures.run(runtime, guest: "echo")
        #expect(!none.stdout.contains("WASMLET_LISTEN_FDS"))
    }

    // MARK: WAT edge cases

    @Test func nonblockingAcceptAnswersEAGAINAndFdstatDescribesSockets() async throws {
        let runtime = try Fixtures.makeRuntime()
        let digest = try Self.wat(runtime, """
                (local $c i32)
                (call $check (call $setflags (i32.const 3) (i32.const 4)) (i32.const 0) (i32.const 10))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 6) (i32.const 11))
                (call $check (call $setflags (i32.const 3) (i32.const 0)) (i32.const 0) (i32.const 12))
                ;; blocks until the test connects; the connection is non-blocking
                (call $check (call $accept (i32.const 3) (i32.const 4) (i32.const 0)) (i32.const 0) (i32.const 13))
                (local.set $c (i32.load (i32.const 0)))
                (call $check (local.get $c) (i32.const 4) (i32.const 14))
                (call $check (call $fdstat (local.get $c) (i32.const 16)) (i32.const 0) (i32.const 15))
                (call $check (i32.load8_u (i32.const 16)) (i32.const 6) (i32.const 16))
                (call $check (i32.load16_u (i32.const 18)) (i32.const 4) (i32.const 17))
                (call $check (call $recv (local.get $c) (call $iov (i32.const 2048) (i32.const 16)) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)) (i32.const 6) (i32.const 18))
                (call $check (call $fdstat (i32.const 3) (i32.const 40)) (i32.const 0) (i32.const 19))
                (call $check (i32.load8_u (i32.const 40)) (i32.const 6) (i32.const 20))
                (call $check (i32.load16_u (i32.const 42)) (i32.const 0) (i32.const 21))
                (call $check (i32.and (i32.wrap_i64 (i64.shr_u (i64.load (i32.const 48)) (i64.const 29))) (i32.const 1)) (i32.const 1) (i32.const 22))
                (call $check (call $filestat (i32.const 3) (i32.const 64)) (i32.const 0) (i32.const 23))
                (call $check (i32.load8_u (i32.const 80)) (i32.const 6) (i32.const 24))
                (call $check (call $prestat (i32.const 3) (i32.const 200)) (i32.const 8) (i32.const 25))
                (call $check (call $seek (local.get $c) (i64.const 0) (i32.const 0) (i32.const 200)) (i32.const 70) (i32.const 26))
                ;; set blocking again, then a blocking recv returns what the test sent
                (call $check (call $setflags (local.get $c) (i32.const 0)) (i32.const 0) (i32.const 27))
                (call $mark (i32.const 65))
                (call $check (call $recv (local.get $c) (call $iov (i32.const 2048) (i32.const 16)) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)) (i32.const 0) (i32.const 28))
                (call $check (i32.load (i32.const 32)) (i32.const 2) (i32.const 29))
                (call $exit (i32.const 0))
            """)
        let started = try Self.start(runtime, digest: digest)
        try await Self.waitUntilBlocked(runtime)  // in the blocking accept, past the EAGAIN
        let client = try SocketSupport.connect(port: started.ports[0])
        defer { close(client) }
        #expect(try await eventually(every: .milliseconds(5)) { Self.output(started).contains("A") })
        try await Self.waitUntilBlocked(runtime)  // in the blocking recv
        try SocketSupport.send(client, "ok")
        let exit = try await runtime.wait(started.key)
        #expect(exit.code == 0, "failed at step \(exit.code)")
    }

    @Test func peekWaitAllSendAndShutdown() async throws {
        let runtime = try Fixtures.makeRuntime()
        let digest = try Self.wat(runtime, """
                (local $c i32)
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 0) (i32.const 10))
                (local.set $c (i32.load (i32.const 0)))
                ;; RECV_PEEK: 4 bytes, left queued
                (call $check (call $recv (local.get $c) (call $iov (i32.const 2048) (i32.const 4)) (i32.const 1) (i32.const 1) (i32.const 32) (i32.const 36)) (i32.const 0) (i32.const 11))
                (call $check (i32.load (i32.const 32)) (i32.const 4) (i32.const 12))
                ;; RECV_WAITALL: 8 bytes, though only 4 are there yet
                (call $check (call $recv (local.get $c) (call $iov (i32.const 2048) (i32.const 8)) (i32.const 1) (i32.const 2) (i32.const 32) (i32.const 36)) (i32.const 0) (i32.const 13))
                (call $check (i32.load (i32.const 32)) (i32.const 8) (i32.const 14))
                (call $mark (i32.const 66))
                ;; RECV_PEEK | RECV_WAITALL: 4 bytes, sent in two parts
                (call $check (call $recv (local.get $c) (call $iov (i32.const 2056) (i32.const 4)) (i32.const 1) (i32.const 3) (i32.const 32) (i32.const 36)) (i32.const 0) (i32.const 15))
                (call $check (i32.load (i32.const 32)) (i32.const 4) (i32.const 16))
                ;; still queued: fd_read takes them
                (call $check (call $read (local.get $c) (call $iov (i32.const 2056) (i32.const 4)) (i32.const 1) (i32.const 32)) (i32.const 0) (i32.const 17))
                (call $check (i32.load (i32.const 32)) (i32.const 4) (i32.const 18))
                (call $check (call $send (local.get $c) (call $iov (i32.const 2048) (i32.const 12)) (i32.const 1) (i32.const 0) (i32.const 32)) (i32.const 0) (i32.const 19))
                (call $check (i32.load (i32.const 32)) (i32.const 12) (i32.const 20))
                (call $check (call $shutdown (local.get $c) (i32.const 0)) (i32.const 28) (i32.const 21))
                (call $check (call $shutdown (local.get $c) (i32.const 2)) (i32.const 0) (i32.const 22))
                ;; the client shuts down too: end of file
                (call $check (call $recv (local.get $c) (call $iov (i32.const 2048) (i32.const 8)) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)) (i32.const 0) (i32.const 23))
                (call $check (i32.load (i32.const 32)) (i32.const 0) (i32.const 24))
                (call $check (call $close (local.get $c)) (i32.const 0) (i32.const 25))
                (call $check (call $close (local.get $c)) (i32.const 8) (i32.const 26))
                (call $exit (i32.const 0))
            """)
        var client: Int32 = -1
        let started = try Self.start(runtime, digest: digest) { ports in
            // Connected and "abcd" queued before the guest runs: its accept and peek never wait,
            // so the first wait it is counted in is RECV_WAITALL's.
            client = try SocketSupport.connect(port: ports[0])
            try SocketSupport.send(client, "abcd")
        }
        defer { close(client) }
        try await Self.waitUntilBlocked(runtime)
        try SocketSupport.send(client, "efgh")
        #expect(try await eventually(every: .milliseconds(5)) { Self.output(started).contains("B") })
        try await Self.waitUntilBlocked(runtime)
        try SocketSupport.send(client, "wx")
        try SocketSupport.send(client, "yz")
        #expect(try SocketSupport.receive(client, count: 12) == "abcdefghwxyz")
        #expect(try SocketSupport.receive(client) == "", "the guest shut down its side")
        shutdown(client, Int32(SHUT_WR))
        let exit = try await runtime.wait(started.key)
        #expect(exit.code == 0, "failed at step \(exit.code)")
    }

    @Test func badDescriptorsAndHostilePointersGetErrnoValues() async throws {
        let runtime = try Fixtures.makeRuntime()
        let digest = try Self.wat(runtime, """
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 65535)) (i32.const 21) (i32.const 10))
                (i32.store (i32.const 1024) (i32.const 65000))
                (i32.store (i32.const 1028) (i32.const 1000))
                (call $check (call $recv (i32.const 3) (i32.const 1024) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)) (i32.const 21) (i32.const 11))
                (call $check (call $send (i32.const 3) (i32.const 1024) (i32.const 100000) (i32.const 0) (i32.const 32)) (i32.const 21) (i32.const 12))
                (call $check (call $poll (i32.const 65500) (i32.const 8192) (i32.const 2) (i32.const 32)) (i32.const 21) (i32.const 13))
                (call $check (call $fdstat (i32.const 3) (i32.const 65530)) (i32.const 21) (i32.const 14))
                (call $check (call $filestat (i32.const 3) (i32.const -8)) (i32.const 21) (i32.const 15))
                (call $check (call $accept (i32.const 99) (i32.const 0) (i32.const 0)) (i32.const 8) (i32.const 16))
                (call $check (call $recv (i32.const 99) (call $iov (i32.const 2048) (i32.const 4)) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)) (i32.const 8) (i32.const 17))
                (call $check (call $shutdown (i32.const 99) (i32.const 2)) (i32.const 8) (i32.const 18))
                (call $check (call $accept (i32.const 1) (i32.const 0) (i32.const 0)) (i32.const 57) (i32.const 19))
                (call $check (call $shutdown (i32.const 1) (i32.const 2)) (i32.const 57) (i32.const 20))
                (call $check (call $recv (i32.const 3) (call $iov (i32.const 2048) (i32.const 4)) (i32.const 1) (i32.const 4) (i32.const 32) (i32.const 36)) (i32.const 28) (i32.const 21))
                (call $check (call $recv (i32.const 3) (call $iov (i32.const 2048) (i32.const 4)) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)) (i32.const 53) (i32.const 22))
                (call $check (call $send (i32.const 3) (call $iov (i32.const 2048) (i32.const 4)) (i32.const 1) (i32.const 0) (i32.const 32)) (i32.const 53) (i32.const 23))
                (call $check (call $accept (i32.const 3) (i32.const 1) (i32.const 0)) (i32.const 28) (i32.const 24))
                (call $check (call $setflags (i32.const 3) (i32.const 1)) (i32.const 28) (i32.const 25))
                (call $check (call $poll (i32.const 4096) (i32.const 8192) (i32.const 0) (i32.const 32)) (i32.const 28) (i32.const 26))
                ;; a bad descriptor in poll is an event with EBADF, not a failed call
                (call $subfd (i32.const 0) (i32.const 1) (i32.const 99))
                (call $check (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 32)) (i32.const 0) (i32.const 27))
                (call $check (i32.load (i32.const 32)) (i32.const 1) (i32.const 28))
                (call $check (i32.load16_u (i32.const 8200)) (i32.const 8) (i32.const 29))
                (call $check (call $close (i32.const 3)) (i32.const 0) (i32.const 30))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 8) (i32.const 31))
                (call $exit (i32.const 0))
            """)
        let started = try Self.start(runtime, digest: digest)
        let exit = try await runtime.wait(started.key)
        #expect(exit.reason == .exited)
        #expect(exit.code == 0, "failed at step \(exit.code)")
        #expect(SocketSupport.isRefused(port: started.ports[0]))
    }

    /// poll_oneoff over stdin (a FIFO), a listener, a connection and clocks at once.
    @Test func pollWaitsOnStdinSocketsAndClocksTogether() async throws {
        let runtime = try Fixtures.makeRuntime()
        let directory = try Fixtures.temporaryDirectory()
        let fifo = directory.appendingPathComponent("stdin").path
        #expect(mkfifo(fifo, 0o600) == 0)
        // Held open for writing (O_RDWR never waits for a peer), so stdin never sees EOF.
        let writer = open(fifo, O_RDWR)
        defer { close(writer) }
        let digest = try Self.wat(runtime, """
                (call $subfd (i32.const 0) (i32.const 1) (i32.const 0))
                (call $subfd (i32.const 1) (i32.const 1) (i32.const 3))
                (call $subclock (i32.const 2) (i64.const 600000000000))
                (call $mark (i32.const 65))
                (call $check (call $poll (i32.const 4096) (i32.const 8192) (i32.const 3) (i32.const 32)) (i32.const 0) (i32.const 10))
                (call $check (i32.load (i32.const 32)) (i32.const 1) (i32.const 11))
                (call $check (i32.load (i32.const 8192)) (i32.const 100) (i32.const 12))
                (call $check (call $read (i32.const 0) (call $iov (i32.const 2048) (i32.const 1)) (i32.const 1) (i32.const 36)) (i32.const 0) (i32.const 13))
                (call $check (i32.load (i32.const 36)) (i32.const 1) (i32.const 14))
                (call $mark (i32.const 66))
                (call $check (call $poll (i32.const 4096) (i32.const 8192) (i32.const 3) (i32.const 32)) (i32.const 0) (i32.const 15))
                (call $check (i32.load (i32.const 32)) (i32.const 1) (i32.const 16))
                (call $check (i32.load (i32.const 8192)) (i32.const 101) (i32.const 17))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 0) (i32.const 18))
                (call $subfd (i32.const 0) (i32.const 2) (i32.load (i32.const 0)))
                (call $check (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 32)) (i32.const 0) (i32.const 19))
                (call $check (i32.load8_u (i32.const 8202)) (i32.const 2) (i32.const 20))
                ;; an idle listener and a 1 ms clock: only the clock fires
                (call $subfd (i32.const 0) (i32.const 1) (i32.const 3))
                (call $subclock (i32.const 1) (i64.const 1000000))
                (call $check (call $poll (i32.const 4096) (i32.const 8192) (i32.const 2) (i32.const 32)) (i32.const 0) (i32.const 21))
                (call $check (i32.load (i32.const 32)) (i32.const 1) (i32.const 22))
                (call $check (i32.load (i32.const 8192)) (i32.const 101) (i32.const 23))
                (call $exit (i32.const 0))
            """)
        let started = try Self.start(runtime, digest: digest, stdin: fifo)
        #expect(try await eventually(every: .milliseconds(5)) { Self.output(started).contains("A") })
        #expect(write(writer, "x", 1) == 1)
        #expect(try await eventually(every: .milliseconds(5)) { Self.output(started).contains("B") })
        let client = try SocketSupport.connect(port: started.ports[0])
        defer { close(client) }
        let exit = try await runtime.wait(started.key)
        #expect(exit.code == 0, "failed at step \(exit.code)")
    }

    @Test func pastTheConnectionLimitConnectionsWaitInTheBacklog() async throws {
        let runtime = try Fixtures.makeRuntime()
        let digest = try Self.wat(runtime, """
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 0) (i32.const 10))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 4)) (i32.const 0) (i32.const 11))
                ;; a third client is queued, but two connections are the limit
                (call $check (call $setflags (i32.const 3) (i32.const 4)) (i32.const 0) (i32.const 12))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 8)) (i32.const 6) (i32.const 13))
                (call $check (call $setflags (i32.const 3) (i32.const 0)) (i32.const 0) (i32.const 14))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 8)) (i32.const 33) (i32.const 15))
                (call $subfd (i32.const 0) (i32.const 1) (i32.const 3))
                (call $subclock (i32.const 1) (i64.const 1000000))
                (call $check (call $poll (i32.const 4096) (i32.const 8192) (i32.const 2) (i32.const 32)) (i32.const 0) (i32.const 16))
                (call $check (i32.load (i32.const 32)) (i32.const 1) (i32.const 17))
                (call $check (i32.load (i32.const 8192)) (i32.const 101) (i32.const 18))
                ;; one closed: the third is accepted
                (call $check (call $close (i32.load (i32.const 0))) (i32.const 0) (i32.const 19))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 8)) (i32.const 0) (i32.const 20))
                (call $exit (i32.const 0))
            """)
        var clients: [Int32] = []
        let started = try Self.start(runtime, digest: digest, limits: InstanceLimits(maxConnections: 2)) { ports in
            clients = try (0..<3).map { _ in try SocketSupport.connect(port: ports[0]) }
        }
        defer { for client in clients { close(client) } }
        let exit = try await runtime.wait(started.key)
        #expect(exit.code == 0, "failed at step \(exit.code)")
    }

    // MARK: Cleanup

    @Test func everyConnectionAndTheListenerAreClosedWhenTheGuestIsKilled() async throws {
        // WASMLET_SOCKET_TEST_CONNECTIONS=10000 for the benchmark-sized run (BENCHMARKS.md).
        let connections = ProcessInfo.processInfo.environment["WASMLET_SOCKET_TEST_CONNECTIONS"].flatMap { Int($0) } ?? 1000
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("echoserver"))
        let started = try Self.start(
            runtime, digest: module.digest, args: ["echoserver", "2000"], limits: InstanceLimits(maxConnections: 2000))
        let port = started.ports[0]
        #expect(SocketSupport.descriptorsOnPort(port) == 1, "the listener")
        // In batches of 100, each client echoed (so the guest accepted it) before the next
        // batch. The first `held` stay open; later batches are closed once echoed (the guest
        // closes its end on end-of-file), so any number of connections can be made.
        let held = min(connections, 1000)
        let clients = try await SocketSupport.blocking { () throws -> [Int32] in
            var clients: [Int32] = []
            for start in stride(from: 0, to: connections, by: 100) {
                let batch = try (0..<100).map { _ in try SocketSupport.connect(port: port) }
                for client in batch { try SocketSupport.send(client, "x") }
                for client in batch where try SocketSupport.receive(client, count: 1) != "x" {
                    throw SocketSupport.Failure(description: "no echo")
                }
                if start < held { clients += batch } else { batch.forEach { close($0) } }
            }
            return clients
        }
        defer { for client in clients { close(client) } }
        #expect(
            try await eventually(every: .milliseconds(5)) { SocketSupport.descriptorsOnPort(port) == held + 1 },
            "this process holds the guest's \(held) open connections and its listener, and nothing of the closed ones (\(SocketSupport.descriptorsOnPort(port)), \(SocketSupport.inodesWithLocalPort(port).count) sockets on the port)")
        try runtime.kill(started.key)
        _ = try await runtime.wait(started.key)
        #expect(try await eventually(every: .milliseconds(5)) { SocketSupport.descriptorsOnPort(port) == 0 })
        #expect(SocketSupport.isRefused(port: port))
    }

    @Test func aGuestThatExitsLeavesNoConnectionOpen() async throws {
        let runtime = try Fixtures.makeRuntime()
        let digest = try Self.wat(runtime, """
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 0) (i32.const 10))
                (call $check (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 0) (i32.const 11))
                (call $exit (i32.const 0))
            """)
        var clients: [Int32] = []
        let started = try Self.start(runtime, digest: digest) { ports in
            clients = try (0..<2).map { _ in try SocketSupport.connect(port: ports[0]) }
        }
        defer { for client in clients { close(client) } }
        #expect(try await runtime.wait(started.key).code == 0)
        // The guest never closed them; its exit did: each client sees end-of-file.
        for client in clients { #expect(try SocketSupport.receive(client) == "") }
        #expect(SocketSupport.descriptorsOnPort(started.ports[0]) == 0)
    }

    // MARK: Create errors

    @Test func aPortInUseFailsCreateAndLeavesNothingBehind() throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        let busy = try ListeningSocket.open(Self.loopback)
        let free = try SocketSupport.freePort()
        let key = InstanceKey(namespace: "sockets", id: Fixtures.uniqueID())
        let error = #expect(throws: RuntimeError.self) {
            try runtime.create(
                InstanceSpec(
                    key: key, moduleDigest: module.digest,
                    listeners: [ListenerSpec(address: "127.0.0.1", port: free), ListenerSpec(address: "127.0.0.1", port: busy.bound.port)]))
        }
        #expect(error?.kind == .failedPrecondition)
        #expect(error?.message == "listen 127.0.0.1:\(busy.bound.port): address already in use")
        #expect(throws: RuntimeError.self) { try runtime.inspect(key) }
        // The first listener, bound before the second failed, was released.
        let again = try ListeningSocket.open(ListenerSpec(address: "127.0.0.1", port: free))
        #expect(again.bound.port == free)
    }

    @Test func unbindableAndMalformedAddressesFailCreate() throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        for (address, expected) in [
            ("192.0.2.1", "listen 192.0.2.1:8080: bind: Cannot assign requested address (no local interface has this address)"),
            ("256.1.1.1", "listen 256.1.1.1:8080: \"256.1.1.1\" is not an IPv4 or IPv6 address"),
            ("localhost", "listen localhost:8080: \"localhost\" is not an IPv4 or IPv6 address"),
        ] {
            let error = #expect(throws: RuntimeError.self) {
                try runtime.create(
                    InstanceSpec(
                        key: InstanceKey(namespace: "sockets", id: Fixtures.uniqueID()), moduleDigest: module.digest,
                        listeners: [ListenerSpec(address: address, port: 8080)]))
            }
            #expect(error?.message == expected)
        }
        #expect(runtime.statistics().created == 0)
    }

    @Test func deletingACreatedInstanceClosesItsListener() throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        let key = InstanceKey(namespace: "sockets", id: Fixtures.uniqueID())
        let snapshot = try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, listeners: [Self.loopback]))
        let port = try #require(snapshot.listeners.first?.boundPort)
        let client = try SocketSupport.connect(port: port)  // queued in the backlog
        close(client)
        try runtime.delete(key)
        #expect(SocketSupport.isRefused(port: port))
        #expect(SocketSupport.descriptorsOnPort(port) == 0)
    }
}
