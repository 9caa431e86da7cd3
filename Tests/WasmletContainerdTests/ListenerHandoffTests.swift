import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import WasmletAPI
import WasmletFDHandoff
import WasmletRuntime
import WasmletTTRPC
import WasmletTestSupport

@testable import WasmletContainerd

// The daemon's side of container listeners: the table of handed-off sockets (bounded, expiring,
// closing), the handoff socket (SCM_RIGHTS, peer check), and the containerd Create path that
// claims them and closes them on every failure, at exit and at Delete.

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
