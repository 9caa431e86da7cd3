import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import WasmletAPI
import WasmletFDHandoff
import WasmletRuntime
import WasmletTTRPC

@testable import WasmletDaemon

// The daemon's side of container listeners: the table of handed-off sockets (bounded, expiring,
// closing), the handoff socket (SCM_RIGHTS, peer check), and the containerd Create path that
// claims them and closes them on every failure, at exit and at Delete.

/// A listening TCP socket on 127.0.0.1 with a kernel-chosen port.
func makeLoopbackListener() throws -> Int32 {
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

func loopbackPort(_ fd: Int32) -> UInt16? {
    SocketFacts.localAddress(fd).flatMap { $0.split(separator: ":").last.flatMap { UInt16($0) } }
}

/// True when a TCP connect to 127.0.0.1:port succeeds (the kernel completes it from the
/// listener's backlog, whether or not anyone accepts).
func loopbackAccepts(_ port: UInt16) -> Bool {
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

/// Identifies an open descriptor's file, so "closed" survives the number being reused.
func inode(_ fd: Int32) -> UInt64? {
    var info = stat()
    return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : nil
}

func openDescriptorCount(pid: pid_t = getpid()) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}


/// One HTTP/1.0 GET to 127.0.0.1:port; the whole answer (the server closes the connection).
func loopbackHTTPGet(port: UInt16, path: String = "/") throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
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
    guard connected == 0 else { throw TestFailure("connect 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n".utf8)
    guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else { throw TestFailure("send failed") }
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count == 0 { break }
        guard count > 0 else { throw TestFailure("recv: \(String(cString: strerror(errno))) after \(answer.count) bytes") }
        answer += buffer[0..<count]
    }
    return String(decoding: answer, as: UTF8.self)
}

/// Whether any descriptor of process `pid` is the socket with this inode.
func process(_ pid: pid_t, holdsSocket inode: UInt64) -> Bool {
    let directory = "/proc/\(pid)/fd"
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return entries.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0)) == "socket:[\(inode)]" }
}

/// Hands `count` fresh loopback listeners for (namespace, id) to the handoff socket at `path`;
/// the test's own copies are closed. Returns the reply and the listeners' ports.
func handOffLoopbackListeners(
    count: Int, namespace: String, id: String, annotation: String, to path: String
) throws -> (ListenerHandoffReply, [UInt16]) {
    let fds = try (0..<count).map { _ in try makeLoopbackListener() }
    defer { for fd in fds { close(fd) } }
    let bound = fds.map { SocketFacts.localAddress($0) ?? "?" }
    let reply = HandoffSocket.handOff(
        ListenerHandoffMessage(namespace: namespace, id: id, annotation: annotation, bound: bound), descriptors: fds, to: path)
    return (reply, fds.compactMap(loopbackPort))
}

@Suite struct ListenerHandoffTableTests {
    @Test func unclaimedListenersAreClosedAtExpiryAndNotBefore() throws {
        let table = ListenerHandoffTable(capacity: 4, lifetime: .seconds(60))
        let fds = try (0..<2).map { _ in try makeLoopbackListener() }
        let identities = fds.map(inode)
        let start = ContinuousClock.now
        try table.deposit(HandedOffListeners(annotation: "0,0", bound: ["a", "b"], descriptors: fds), for: InstanceKey(namespace: "n", id: "c"), now: start)
        #expect(table.sweep(now: start + .seconds(59)).isEmpty)
        #expect(fds.map(inode) == identities)
        #expect(table.sweep(now: start + .seconds(60)) == [InstanceKey(namespace: "n", id: "c")])
        #expect(table.count == 0)
        // Closed: the numbers are either free or now name some other file.
        for (fd, identity) in zip(fds, identities) { #expect(inode(fd) != identity) }
    }

    @Test func claimTakesOwnershipAndTheTableIsBounded() throws {
        let table = ListenerHandoffTable(capacity: 2, lifetime: .seconds(60))
        let now = ContinuousClock.now
        let baseline = openDescriptorCount()
        for id in ["a", "b"] {
            try table.deposit(HandedOffListeners(annotation: "0", bound: ["x"], descriptors: [try makeLoopbackListener()]), for: InstanceKey(namespace: "n", id: id), now: now)
        }
        let third = HandedOffListeners(annotation: "0", bound: ["x"], descriptors: [try makeLoopbackListener()])
        #expect(throws: ListenerHandoffTable.Refusal.self) { try table.deposit(third, for: InstanceKey(namespace: "n", id: "c"), now: now) }
        third.close()
        // A second handoff for the same key replaces (and closes) the first.
        let replacement = HandedOffListeners(annotation: "1", bound: ["y"], descriptors: [try makeLoopbackListener()])
        try table.deposit(replacement, for: InstanceKey(namespace: "n", id: "a"), now: now)
        let claimed = try #require(table.claim(InstanceKey(namespace: "n", id: "a")))
        #expect(claimed.annotation == "1")
        #expect(table.claim(InstanceKey(namespace: "n", id: "a")) == nil)
        let fd = try #require(claimed.descriptors.first)
        #expect(SocketFacts.isListeningTCP(fd))
        claimed.close()
        claimed.close()
        #expect(claimed.isClosed)
        table.closeAll()
        #expect(table.count == 0)
        // Other tests run in this process at the same time, so this count is only a hint;
        // the inode checks above are the proof.
        _ = baseline
    }
}

@Suite struct ListenerHandoffServerTests {
    func server(authorize: @escaping @Sendable (PeerCredentials) -> Bool) throws -> (ListenerHandoffServer, TemporaryDirectory) {
        let directory = try TemporaryDirectory()
        let server = try ListenerHandoffServer(
            path: directory.path + "/api.sock.listeners", table: ListenerHandoffTable(), group: nil, authorize: authorize,
            logger: Logger(label: "test"))
        return (server, directory)
    }

    @Test func handedOffListenerArrivesAsTheSameSocket() throws {
        let (server, directory) = try server { _ in true }
        defer { server.stop() }
        _ = directory
        let fd = try makeLoopbackListener()
        defer { close(fd) }
        let address = try #require(SocketFacts.localAddress(fd))
        let reply = HandoffSocket.handOff(
            ListenerHandoffMessage(namespace: "k8s.io", id: "web", annotation: "8080", bound: [address]), descriptors: [fd],
            to: server.path)
        #expect(reply == .ok)
        let claimed = try #require(server.table.claim(InstanceKey(namespace: "k8s.io", id: "web")))
        defer { claimed.close() }
        #expect(claimed.bound == [address])
        let arrived = try #require(claimed.descriptors.first)
        #expect(SocketFacts.localAddress(arrived) == address)
        #expect(inode(arrived) == inode(fd))
    }

    @Test func anUnauthorizedPeerIsRefusedBeforeItsDescriptorsAreTaken() throws {
        let asked = Mutex<[PeerCredentials]>([])
        let (server, directory) = try server { peer in
            asked.withLock { $0.append(peer) }
            return false
        }
        defer { server.stop() }
        _ = directory
        let (reply, ports) = try handOffLoopbackListeners(count: 1, namespace: "n", id: "c", annotation: "0", to: server.path)
        #expect(reply == .error("not authorized"))
        #expect(asked.withLock { $0.map(\.pid) } == [getpid()])
        #expect(server.table.count == 0)
        // Never received, and the test closed its own copy: nothing listens any more.
        #expect(!loopbackAccepts(ports[0]))
    }

    @Test func descriptorsThatAreNotListenersAreRefusedAndClosed() throws {
        let (server, directory) = try server { _ in true }
        defer { server.stop() }
        _ = directory
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        defer {
            close(ends[0])
            close(ends[1])
        }
        let reply = HandoffSocket.handOff(
            ListenerHandoffMessage(namespace: "n", id: "pipe", annotation: "0", bound: ["0.0.0.0:1"]), descriptors: [ends[0]],
            to: server.path)
        guard case .error(let message) = reply else {
            Issue.record("a pipe was accepted as a listener")
            return
        }
        #expect(message.contains("not a listening TCP socket"))
        // Count mismatch.
        let fd = try makeLoopbackListener()
        defer { close(fd) }
        let mismatch = HandoffSocket.handOff(
            ListenerHandoffMessage(namespace: "n", id: "two", annotation: "0,0", bound: ["a", "b"]), descriptors: [fd], to: server.path)
        #expect(mismatch == .error("1 descriptors for 2 listeners"))
        #expect(server.table.count == 0)
    }
}

extension DaemonEndToEndTests {
    /// A real wasmletd: listeners handed to its socket and claimed by a containerd Create.
    @Suite struct ContainerdListeners {
        @Test func createClaimsTheListenersAndExitAndDeleteCloseThem() async throws {
            let harness = try await TaskHarness()
            let path = ListenerHandoffMessage.socketPath(forAPISocket: harness.daemon.socketPath)
            // Created, never started, deleted: open from Create to Delete.
            let (reply, ports) = try handOffLoopbackListeners(
                count: 2, namespace: harness.namespace, id: "web", annotation: "127.0.0.1:0,127.0.0.1:0", to: path)
            #expect(reply == .ok)
            let bundle = try harness.bundle("web", module: "sleeper", annotations: ["wasmlet.dev/listen": "127.0.0.1:0,127.0.0.1:0"])
            _ = try await harness.create("web", bundle: bundle)
            #expect(ports.allSatisfy(loopbackAccepts))  // the daemon holds them; the backlog takes connections
            let client = try await harness.daemon.client()
            let instance = try await client.inspect("web", namespace: harness.namespace)
            #expect(instance.labels["wasmlet.dev/listeners"] == ports.map { "127.0.0.1:\($0)" }.joined(separator: ","))
            await client.close()
            _ = try await harness.delete("web")
            #expect(!ports.contains(where: loopbackAccepts))
            #expect(harness.daemon.log.contains("listeners handed off"))

            // Started and killed: closed once the exit is reported.
            let (second, running) = try handOffLoopbackListeners(count: 1, namespace: harness.namespace, id: "run", annotation: "9", to: path)
            #expect(second == .ok)
            _ = try await harness.create("run", bundle: try harness.bundle("run", module: "sleeper", annotations: ["wasmlet.dev/listen": "9"]))
            _ = try await harness.start("run")
            #expect(loopbackAccepts(running[0]))
            try await harness.kill("run", signal: 9)
            #expect(try await harness.wait("run").exitStatus == 137)
            #expect(!loopbackAccepts(running[0]))
            _ = try await harness.delete("run")
            await harness.stop()
        }

        @Test func aContainerGuestServesHTTPOnItsHandedOffListenerUntilKillAndDelete() async throws {
            let harness = try await TaskHarness()
            let path = ListenerHandoffMessage.socketPath(forAPISocket: harness.daemon.socketPath)
            let pid = harness.daemon.pid
            // The same task once without listeners first, so what the daemon opens once and
            // keeps (the events connection, a warm instance) is in the baseline.
            _ = try await harness.create("warm", bundle: try harness.bundle("warm", module: "httpd"))
            _ = try await harness.start("warm")
            try await harness.kill("warm", signal: 9)
            #expect(try await harness.wait("warm").exitStatus == 137)
            _ = try await harness.delete("warm")
            let baseline = openDescriptorCount(pid: pid)
            // As the shim does: bind, hand over, close its own copy.
            let fd = try makeLoopbackListener()
            let identity = try #require(inode(fd))
            let port = try #require(loopbackPort(fd))
            let address = try #require(SocketFacts.localAddress(fd))
            let reply = HandoffSocket.handOff(
                ListenerHandoffMessage(namespace: harness.namespace, id: "web", annotation: "8080", bound: [address]),
                descriptors: [fd], to: path)
            close(fd)
            #expect(reply == .ok)
            #expect(process(pid, holdsSocket: identity))
            let bundle = try harness.bundle("web", module: "httpd", annotations: ["wasmlet.dev/listen": "8080"])
            _ = try await harness.create("web", bundle: bundle)
            let client = try await harness.daemon.client()
            let instance = try await client.inspect("web", namespace: harness.namespace)
            await client.close()
            // The guest's fd 4, after its one preopen (the rootfs as /), shown by Inspect as if
            // the runtime had bound it.
            #expect(instance.listeners.map(\.guestFd) == [4])
            #expect(instance.listeners.map(\.boundAddress) == [address])
            _ = try await harness.start("web")
            // A real HTTP client, answered by the C guest on the handed-off socket.
            for _ in 0..<3 {
                let page = try loopbackHTTPGet(port: port)
                #expect(page.hasPrefix("HTTP/1.1 200 OK\r\n"))
                #expect(page.hasSuffix("\r\n\r\nhello from wasmlet httpd\n"))
            }
            try await harness.kill("web", signal: 9)
            #expect(try await harness.wait("web").exitStatus == 137)
            #expect(!loopbackAccepts(port))
            _ = try await harness.delete("web")
            // Closed by the runtime, once: the daemon holds no descriptor of it, and its count is back.
            #expect(await eventually { !process(pid, holdsSocket: identity) })
            let closed = await eventually { openDescriptorCount(pid: pid) <= baseline }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            let listing = entries.map { "\($0)->" + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/" + $0)) ?? "?") }
            #expect(closed, "baseline \(baseline), now \(listing)")
            #expect(!harness.daemon.log.contains("Bad file descriptor"))
            await harness.stop()
        }

        @Test func createFailsClearlyWithoutOrWithWrongListenersAndLeavesNothingOpen() async throws {
            let harness = try await TaskHarness()
            let path = ListenerHandoffMessage.socketPath(forAPISocket: harness.daemon.socketPath)
            // Asked for, never handed over (an old shim, or no shim).
            let bare = try harness.bundle("bare", annotations: ["wasmlet.dev/listen": "8080"])
            let none = await statusCode { _ = try await harness.create("bare", bundle: bare) }
            #expect(none?.0 == .failedPrecondition)
            #expect(none?.1.contains("wasmlet.dev/listen") == true)
            #expect(none?.1.contains("handed none") == true)

            // Handed over for another value than the spec's.
            let (reply, ports) = try handOffLoopbackListeners(count: 1, namespace: harness.namespace, id: "other", annotation: "1", to: path)
            #expect(reply == .ok)
            let other = try harness.bundle("other", annotations: ["wasmlet.dev/listen": "2"])
            #expect(await statusCode { _ = try await harness.create("other", bundle: other) }?.0 == .failedPrecondition)
            #expect(!loopbackAccepts(ports[0]))

            // A Create that fails for another reason (no module) closes them too.
            let (again, missingPorts) = try handOffLoopbackListeners(count: 1, namespace: harness.namespace, id: "missing", annotation: "3", to: path)
            #expect(again == .ok)
            let missing = try harness.bundle("missing", args: ["/nope.wasm"], annotations: ["wasmlet.dev/listen": "3"])
            #expect(await statusCode { _ = try await harness.create("missing", bundle: missing) }?.0 == .notFound)
            #expect(!loopbackAccepts(missingPorts[0]))

            // The pod sandbox gets pod annotations too; it never asks for listeners.
            let sandbox = try harness.bundle(
                "sandbox", module: nil, args: ["/pause"],
                annotations: [
                    "io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "sandbox", "wasmlet.dev/listen": "8080",
                ])
            _ = try await harness.create("sandbox", bundle: sandbox)
            _ = try await harness.delete("sandbox")
            await harness.stop()
        }

        @Test func unclaimedListenersAreClosedAfterTheirLifetime() async throws {
            let directory = try TemporaryDirectory()
            let daemon = try await DaemonProcess(directory: directory, environment: ["WASMLET_TEST_HANDOFF_LIFETIME_MS": "500"])
            let baseline = openDescriptorCount(pid: daemon.pid)
            let (reply, ports) = try handOffLoopbackListeners(
                count: 3, namespace: "k8s.io", id: "never-created", annotation: "0,0,0",
                to: ListenerHandoffMessage.socketPath(forAPISocket: daemon.socketPath))
            #expect(reply == .ok)
            #expect(
                await eventually(timeout: .seconds(30)) {
                    daemon.log.contains("closed handed-off listeners no Create claimed")
                        && openDescriptorCount(pid: daemon.pid) <= baseline && !ports.contains(where: loopbackAccepts)
                })
            #expect(daemon.log.contains("never-created"))
            await daemon.stop()
        }
    }
}
