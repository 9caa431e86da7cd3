import Foundation
import NIOCore
import SwiftProtobuf
import Testing
@testable import WasmletTTRPC
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Server and client against real Unix sockets in a temporary directory.
@Suite("ttrpc server and client")
struct ServerClientTests {
    @Test("round trip: raw bytes, typed messages, metadata, error statuses")
    func roundTrip() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: echoRegistry())
        let client = try await TTRPCClient.connect(unixSocketPath: "unix://" + dir.socket())

        let echoed = try await client.call(service: "test.Echo", method: "Echo", payload: Array("hello".utf8))
        #expect(string(echoed) == "hello")

        let empty = try await client.call(service: "test.Echo", method: "Echo", payload: [])
        #expect(empty.isEmpty)

        let upper = try await client.call(
            service: "test.Echo", method: "Upper", request: Google_Protobuf_StringValue("wasm"),
            responseType: Google_Protobuf_StringValue.self)
        #expect(upper.value == "WASM")

        let namespace = try await client.call(
            service: "test.Echo", method: "Namespace", payload: [],
            metadata: [TTRPCMetadata.containerdNamespaceKey: "k8s.io"])
        #expect(string(namespace) == "k8s.io")

        let notFound = await ttrpcError {
            _ = try await client.call(service: "test.Echo", method: "Fail", payload: [])
        }
        #expect(notFound == TTRPCError(.notFound, "no such thing"))

        let crash = await ttrpcError {
            _ = try await client.call(service: "test.Echo", method: "Crash", payload: [])
        }
        #expect(crash?.code == .internal)
        #expect(crash?.message.contains("boom happened") == true)

        // A payload that is not a StringValue (field 1 with wire type 7 does not exist).
        let invalid = await ttrpcError {
            _ = try await client.call(service: "test.Echo", method: "Upper", payload: [0x0F, 0xFF, 0xFF])
        }
        #expect(invalid?.code == .invalidArgument)

        await client.close()
        await server.shutdown()
    }

    @Test("60 concurrent calls on one connection, answered out of order")
    func concurrentOutOfOrder() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let others = 59
        let completedOthers = Shared(0)
        let running = Shared((now: 0, max: 0))
        let firstArrived = Shared(false)

        var registry = TTRPCServiceRegistry()
        registry.register(service: "test.Slow", method: "Call") { context, payload in
            let index = Int(string(payload))!
            running.update { $0.now += 1; $0.max = max($0.max, $0.now) }
            defer { running.update { $0.now -= 1 } }
            if index == 0 {
                // The first call holds its answer until every other call has been answered.
                firstArrived.update { $0 = true }
                let done = await eventually(timeout: .seconds(20), every: .milliseconds(1)) { completedOthers.value == others }
                guard done else { throw TTRPCError.aborted("the other calls never completed") }
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
            return Array("reply-\(index)-stream-\(context.streamID)".utf8)
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())

        let finishOrder = Shared([Int]())
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            group.addTask {
                let reply = try await client.call(service: "test.Slow", method: "Call", payload: Array("0".utf8))
                finishOrder.update { $0.append(0) }
                return (0, string(reply))
            }
            #expect(await eventually(every: .milliseconds(1)) { firstArrived.value })
            for index in 1...others {
                group.addTask {
                    let reply = try await client.call(
                        service: "test.Slow", method: "Call", payload: Array("\(index)".utf8))
                    completedOthers.update { $0 += 1 }
                    finishOrder.update { $0.append(index) }
                    return (index, string(reply))
                }
            }
            var seen = Set<Int>()
            for try await (index, reply) in group {
                #expect(reply.hasPrefix("reply-\(index)-stream-"))
                seen.insert(index)
            }
            #expect(seen.count == others + 1)
        }
        // Call 0 went out first, on stream 1, and was answered last.
        #expect(finishOrder.value.last == 0)
        #expect(finishOrder.value.count == others + 1)
        // The slow calls overlapped rather than running one after another.
        #expect(running.value.max >= 10)
        await client.close()
        await server.shutdown()
    }

    @Test("unknown service and unknown method answer UNIMPLEMENTED")
    func unimplemented() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: echoRegistry())
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())

        let noService = await ttrpcError {
            _ = try await client.call(service: "containerd.task.v2.Task", method: "Create", payload: [])
        }
        #expect(noService?.code == .unimplemented)
        #expect(noService?.code.rawValue == 12)
        #expect(noService?.message.contains("containerd.task.v2.Task") == true)

        let noMethod = await ttrpcError {
            _ = try await client.call(service: "test.Echo", method: "Nope", payload: [])
        }
        #expect(noMethod?.code == .unimplemented)
        #expect(noMethod?.message.contains("Nope") == true)

        // The connection is still good.
        #expect(string(try await client.call(service: "test.Echo", method: "Echo", payload: Array("ok".utf8))) == "ok")
        await client.close()
        await server.shutdown()
    }

    @Test("a frame over 4 MiB is answered RESOURCE_EXHAUSTED and the connection keeps working")
    func oversizedFrame() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: echoRegistry())

        let raw = try RawSocket(path: dir.socket())
        let length = TTRPCFrameHeader.defaultMaxPayloadLength + 1
        try await raw.send(TTRPCFrameHeader(payloadLength: UInt32(length), streamID: 1, type: .request).bytes)
        try await raw.send([UInt8](repeating: 0x41, count: length))
        let refused = try #require(try await raw.receiveResponse())
        #expect(refused.header.streamID == 1)
        #expect(refused.header.type == .response)
        #expect(refused.response.status.code == TTRPCStatusCode.resourceExhausted.rawValue)
        #expect(refused.response.status.message.contains("\(length)"))

        // Same connection, next request.
        try await raw.sendRequest(stream: 3, makeRequest(service: "test.Echo", method: "Echo", payload: Array("after".utf8)))
        let answered = try #require(try await raw.receiveResponse())
        #expect(answered.header.streamID == 3)
        #expect(answered.response.status.code == 0)
        #expect(string([UInt8](answered.response.payload)) == "after")

        // The client refuses to send an oversized request itself, without losing its connection.
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        let tooBig = await ttrpcError {
            _ = try await client.call(
                service: "test.Echo", method: "Echo", payload: [UInt8](repeating: 1, count: length))
        }
        #expect(tooBig?.code == .resourceExhausted)
        #expect(string(try await client.call(service: "test.Echo", method: "Echo", payload: Array("x".utf8))) == "x")

        await client.close()
        await server.shutdown()
    }

    @Test("a response over 4 MiB is replaced by RESOURCE_EXHAUSTED")
    func oversizedResponse() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        var registry = TTRPCServiceRegistry()
        registry.register(service: "test.Big", method: "Get") { _, _ in
            [UInt8](repeating: 7, count: TTRPCFrameHeader.defaultMaxPayloadLength + 10)
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        let error = await ttrpcError { _ = try await client.call(service: "test.Big", method: "Get", payload: []) }
        #expect(error?.code == .resourceExhausted)
        #expect(client.isConnected)
        await client.close()
        await server.shutdown()
    }

    @Test("garbage bytes close only that connection")
    func garbageClosesOnlyThatConnection() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let protocolErrors = Shared(0)
        let server = try await TTRPCServer.bind(
            unixSocketPath: dir.socket(), registry: echoRegistry(),
            configuration: .init(onProtocolError: { _, _ in protocolErrors.update { $0 += 1 } }))
        let good = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        #expect(string(try await good.call(service: "test.Echo", method: "Echo", payload: Array("1".utf8))) == "1")

        // Bad type byte (0x6F at offset 8).
        let garbage = try RawSocket(path: dir.socket())
        try await garbage.send(Array("hello, this is not ttrpc at all".utf8))
        #expect(await garbage.waitForClose())

        // Right type, but the payload is not a ttrpc.Request.
        let undecodable = try RawSocket(path: dir.socket())
        try await undecodable.send(TTRPCFrameHeader(payloadLength: 4, streamID: 1, type: .request).bytes + [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(await undecodable.waitForClose())

        #expect(await eventually(every: .milliseconds(1)) { protocolErrors.value == 2 })
        #expect(good.isConnected)
        #expect(string(try await good.call(service: "test.Echo", method: "Echo", payload: Array("2".utf8))) == "2")
        let fresh = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        #expect(string(try await fresh.call(service: "test.Echo", method: "Echo", payload: Array("3".utf8))) == "3")
        await good.close()
        await fresh.close()
        await server.shutdown()
    }

    @Test("an even stream id is answered INVALID_ARGUMENT")
    func evenStreamID() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: echoRegistry())
        let raw = try RawSocket(path: dir.socket())
        try await raw.sendRequest(stream: 2, makeRequest(service: "test.Echo", method: "Echo"))
        let reply = try #require(try await raw.receiveResponse())
        #expect(reply.header.streamID == 2)
        #expect(reply.response.status.code == TTRPCStatusCode.invalidArgument.rawValue)
        await server.shutdown()
    }

    @Test("timeout_nano is honoured: DEADLINE_EXCEEDED and the handler is cancelled")
    func timeout() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let cancelled = Shared(0)
        let sawDeadline = Shared(false)
        var registry = TTRPCServiceRegistry()
        registry.register(service: "test.Slow", method: "Sleep") { context, _ in
            sawDeadline.update { $0 = context.deadline != nil }
            do {
                try await Task.sleep(for: .seconds(3600))
            } catch {
                cancelled.update { $0 += 1 }
                throw error
            }
            return []
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)

        // The server's own deadline, seen on the wire.
        let raw = try RawSocket(path: dir.socket())
        let started = ContinuousClock.now
        try await raw.sendRequest(stream: 1, makeRequest(service: "test.Slow", method: "Sleep", timeoutNano: 200_000_000))
        let reply = try #require(try await raw.receiveResponse())
        let elapsed = ContinuousClock.now - started
        #expect(reply.response.status.code == TTRPCStatusCode.deadlineExceeded.rawValue)
        #expect(elapsed >= .milliseconds(190))
        // Answered by the deadline, not by the handler's hour of sleep. Not a speed check: on a
        // loaded 2-core machine this took 9 s once (the raw socket's I/O runs on Dispatch threads).
        #expect(elapsed < .seconds(120))
        #expect(sawDeadline.value)
        #expect(await eventually(every: .milliseconds(1)) { cancelled.value == 1 })

        // Through the client.
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        let error = await ttrpcError {
            _ = try await client.call(service: "test.Slow", method: "Sleep", payload: [], timeout: .milliseconds(100))
        }
        #expect(error?.code == .deadlineExceeded)
        #expect(await eventually(every: .milliseconds(1)) { cancelled.value == 2 })
        #expect(client.isConnected)
        await client.close()
        await server.shutdown()
    }

    @Test("cancelling the calling task fails the call with CANCELLED")
    func callerCancellation() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let started = Shared(false)
        var registry = TTRPCServiceRegistry()
        registry.register(service: "test.Slow", method: "Sleep") { _, _ in
            started.update { $0 = true }
            try await Task.sleep(for: .seconds(30))
            return []
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        let task = Task { try await client.call(service: "test.Slow", method: "Sleep", payload: []) }
        #expect(await eventually(every: .milliseconds(1)) { started.value })
        task.cancel()
        let error = await ttrpcError { _ = try await task.value }
        #expect(error?.code == .cancelled)
        await client.close()
        await server.shutdown(gracePeriod: .milliseconds(10))
    }

    @Test("server going away fails pending calls with UNAVAILABLE")
    func serverGoesAway() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let started = Shared(0)
        var registry = TTRPCServiceRegistry()
        registry.register(service: "test.Slow", method: "Hang") { _, _ in
            started.update { $0 += 1 }
            try await Task.sleep(for: .seconds(60))
            return []
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())

        let errors = Shared([TTRPCError]())
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    if let error = await ttrpcError({
                        _ = try await client.call(service: "test.Slow", method: "Hang", payload: [])
                    }) {
                        errors.update { $0.append(error) }
                    }
                }
            }
            #expect(await eventually(every: .milliseconds(1)) { started.value == 3 })
            await server.shutdown(gracePeriod: .milliseconds(50))
        }
        #expect(errors.value.count == 3)
        for error in errors.value {
            #expect(error.code == .unavailable)
            #expect(error.message.contains(dir.socket()))
        }
        #expect(await eventually(every: .milliseconds(1)) { !client.isConnected })
        // Later calls fail at once, also UNAVAILABLE.
        let later = await ttrpcError { _ = try await client.call(service: "test.Slow", method: "Hang", payload: []) }
        #expect(later?.code == .unavailable)
        // The socket file is gone.
        #expect(access(dir.socket(), F_OK) != 0)
    }

    @Test("graceful shutdown lets in-flight calls finish and refuses new connections")
    func gracefulShutdown() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let started = Shared(false)
        var registry = TTRPCServiceRegistry()
        registry.register(service: "test.Slow", method: "Short") { _, _ in
            started.update { $0 = true }
            try await Task.sleep(for: .milliseconds(300))
            return Array("finished".utf8)
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        async let reply = client.call(service: "test.Slow", method: "Short", payload: [])
        #expect(await eventually(every: .milliseconds(1)) { started.value })
        await server.shutdown(gracePeriod: .seconds(10))
        #expect(string(try await reply) == "finished")
        #expect(server.connectionCount == 0)

        let refused = await ttrpcError { _ = try await TTRPCClient.connect(unixSocketPath: dir.socket()) }
        #expect(refused?.code == .unavailable)
        #expect(refused?.message.contains(dir.socket()) == true)
    }

    @Test("connecting where no server is gives a clear UNAVAILABLE naming the path")
    func connectFailures() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let missing = await ttrpcError { _ = try await TTRPCClient.connect(unixSocketPath: dir.socket("absent.sock")) }
        #expect(missing?.code == .unavailable)
        #expect(missing?.message.contains(dir.socket("absent.sock")) == true)
        #expect(missing?.message.contains("no such socket") == true)

        try makeStaleSocket(at: dir.socket("stale.sock"))
        let stale = await ttrpcError { _ = try await TTRPCClient.connect(unixSocketPath: dir.socket("stale.sock")) }
        #expect(stale?.code == .unavailable)
        #expect(stale?.message.contains("connection refused") == true)
    }

    @Test("bind replaces a stale socket, refuses a live server and a non-socket file")
    func bindChecks() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        try makeStaleSocket(at: dir.socket())
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: echoRegistry())
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        #expect(string(try await client.call(service: "test.Echo", method: "Echo", payload: Array("a".utf8))) == "a")

        let second = await ttrpcError { _ = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: echoRegistry()) }
        #expect(second?.code == .alreadyExists)
        #expect(second?.message.contains(dir.socket()) == true)
        // The first server is untouched.
        #expect(string(try await client.call(service: "test.Echo", method: "Echo", payload: Array("b".utf8))) == "b")

        let plainFile = dir.socket("plain")
        #expect(FileManager.default.createFile(atPath: plainFile, contents: Data("x".utf8)))
        let notSocket = await ttrpcError { _ = try await TTRPCServer.bind(unixSocketPath: plainFile, registry: echoRegistry()) }
        #expect(notSocket?.code == .failedPrecondition)
        #expect(FileManager.default.fileExists(atPath: plainFile))

        let tooLong = await ttrpcError {
            _ = try await TTRPCServer.bind(unixSocketPath: "/tmp/" + String(repeating: "x", count: 120), registry: echoRegistry())
        }
        #expect(tooLong?.code == .invalidArgument)

        await client.close()
        await server.shutdown()
    }

    @Test("adopts an already-listening descriptor (socket activation)")
    func adoptDescriptor() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let fd = try makeListeningSocket(at: dir.socket())
        let server = try await TTRPCServer.adopt(listeningSocket: fd, registry: echoRegistry())
        #expect(server.socketPath == nil)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        #expect(string(try await client.call(service: "test.Echo", method: "Echo", payload: Array("fd".utf8))) == "fd")
        await client.close()
        await server.shutdown()
    }

    @Test("authorizer refusal answers every request PERMISSION_DENIED")
    func authorizerRefusal() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let askedAbout = Shared([PeerCredentials]())
        let server = try await TTRPCServer.bind(
            unixSocketPath: dir.socket(), registry: echoRegistry(),
            configuration: .init(authorizer: { peer in
                askedAbout.update { $0.append(peer) }
                return false
            }))
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        for _ in 0..<2 {
            let error = await ttrpcError { _ = try await client.call(service: "test.Echo", method: "Echo", payload: []) }
            #expect(error?.code == .permissionDenied)
            #expect(error?.code.rawValue == 7)
            #expect(error?.message.contains("uid \(getuid())") == true)
        }
        // Even unknown methods: the peer learns nothing about what is served.
        let unknown = await ttrpcError { _ = try await client.call(service: "x", method: "y", payload: []) }
        #expect(unknown?.code == .permissionDenied)
        // Checked once per connection.
        #expect(askedAbout.value.count == 1)
        await client.close()
        await server.shutdown()

        // An authorizer that accepts our uid lets calls through.
        let ourUID = getuid()
        let open = try await TTRPCServer.bind(
            unixSocketPath: dir.socket(), registry: echoRegistry(),
            configuration: .init(authorizer: { $0.uid == ourUID }))
        let allowed = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        #expect(string(try await allowed.call(service: "test.Echo", method: "Echo", payload: Array("in".utf8))) == "in")
        await allowed.close()
        await open.shutdown()
    }

    @Test("the call context carries our own pid, uid and gid")
    func peerCredentials() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let seen = Shared<PeerCredentials?>(nil)
        var registry = TTRPCServiceRegistry()
        registry.register(service: "test.Who", method: "Ami") { context, _ in
            seen.update { $0 = context.peer }
            return []
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        _ = try await client.call(service: "test.Who", method: "Ami", payload: [])
        let peer = try #require(seen.value)
        #expect(peer.pid == getpid())
        #expect(peer.uid == getuid())
        #expect(peer.gid == getgid())
        #expect(peer == PeerCredentials.current)
        await client.close()
        await server.shutdown()
    }
}

/// Leaves a socket file at `path` with nobody listening on it, as a crashed server would.
func makeStaleSocket(at path: String) throws {
    let fd = try makeListeningSocket(at: path)
    close(fd)
}

/// A bound, listening Unix stream socket at `path` (what systemd would hand over).
func makeListeningSocket(at path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TTRPCError.internal("socket: errno \(errno)") }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard bound == 0, listen(fd, 16) == 0 else {
        close(fd)
        throw TTRPCError.internal("bind/listen \(path): errno \(errno)")
    }
    return fd
}
