import Foundation
import Testing
import WasmletConventions
import WasmletFDHandoff

@testable import WasmletShim
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

// Container listeners on the shim's side: the one `[ADDR:]PORT` parser, which namespace a
// container's listeners go in, the SCM_RIGHTS round trip, and (as root) sockets created
// inside a network namespace the test makes.

@Suite struct ListenAddressParsing {
    @Test func formsAndDefaults() throws {
        #expect(try ListenAddress.parse("8080", defaultAddress: "0.0.0.0") == ListenAddress(address: "0.0.0.0", port: 8080))
        #expect(try ListenAddress.parse("127.0.0.1:0") == ListenAddress(address: "127.0.0.1", port: 0))
        #expect(try ListenAddress.parse(" [::1]:443 ") == ListenAddress(address: "::1", port: 443))
        #expect(try ListenAddress.parse("[::]:80").description == "[::]:80")
        #expect(try ListenAddress.parse("[::ffff:10.0.0.1]:80").address == "::ffff:10.0.0.1")
        let list = try ListenAddress.parseList("8080, 127.0.0.1:9090,[::]:8080", defaultAddress: "0.0.0.0")
        #expect(list.map(\.description) == ["0.0.0.0:8080", "127.0.0.1:9090", "[::]:8080"])
    }

    @Test(arguments: [
        "", "http", "80x", "65536", "-1", ":80", "1.2.3:80", "256.1.1.1:80", "01.2.3.4:80", "localhost:80", "::1:80",
        "[::1]", "[::1]80", "[1::2::3]:80", "[12345::]:80", "1.2.3.4:", "8080,", ",8080", "8080,8080",
    ])
    func malformedValuesAreRefusedWithTheValueInTheMessage(_ text: String) {
        do {
            _ = try ListenAddress.parseList(text, defaultAddress: "0.0.0.0")
            Issue.record("\"\(text)\" was accepted")
        } catch {
            let message = "\(error)"
            #expect(message.contains("\"\(text)\"") || message.contains("listed twice"))
            #expect(message.contains("[ADDR:]PORT") || message.contains("listed twice"))
        }
    }
}

@Suite struct PodNetworkNamespaces {
    func spec(type: String?, sandbox: String?, netns: String?, listen: String? = "8080", entry: Bool = true) -> [UInt8] {
        var annotations: [String: String] = [:]
        if let type { annotations["io.kubernetes.cri.container-type"] = type }
        if let sandbox { annotations["io.kubernetes.cri.sandbox-id"] = sandbox }
        if let listen { annotations["wasmlet.dev/listen"] = listen }
        var namespaces: [[String: String]] = [["type": "pid"], ["type": "ipc", "path": "/proc/9/ns/ipc"]]
        if entry { namespaces.append(netns.map { ["type": "network", "path": $0] } ?? ["type": "network"]) }
        let object: [String: Any] = [
            "ociVersion": "1.0.2", "annotations": annotations, "linux": ["namespaces": namespaces],
            "process": ["args": ["/app.wasm"], "env": ["A=\"path\": {\"type\": \"network\"}"]],
        ]
        return Array(try! JSONSerialization.data(withJSONObject: object))
    }

    @Test func factsComeFromTheSpec() throws {
        let facts = try #require(ContainerNetworkFacts(spec: spec(type: "sandbox", sandbox: "s1", netns: "/var/run/netns/cni-1")))
        #expect(facts == ContainerNetworkFacts(kind: .sandbox, sandboxID: "s1", networkNamespacePath: "/var/run/netns/cni-1", listen: "8080"))
        let host = try #require(ContainerNetworkFacts(spec: spec(type: nil, sandbox: nil, netns: nil, listen: nil)))
        #expect(host == ContainerNetworkFacts(kind: .standalone))
        #expect(ContainerNetworkFacts(spec: Array("{\"linux\": ".utf8)) == nil)
    }

    @Test func appContainersUseTheSandboxesPathNeverTheirOwn() throws {
        var pods = PodNetworks()
        let sandbox = try #require(ContainerNetworkFacts(spec: spec(type: "sandbox", sandbox: "s1", netns: "/var/run/netns/cni-1")))
        pods.recordSandbox(id: "s1", facts: sandbox)
        // What containerd 1.6 gives an app container: /proc/<pid the shim reported>/ns/net.
        let app = try #require(ContainerNetworkFacts(spec: spec(type: "container", sandbox: "s1", netns: "/proc/4242/ns/net")))
        #expect(try pods.listenerNamespace(containerID: "c1", facts: app).get() == .path("/var/run/netns/cni-1"))

        // Its sandbox unknown to this shim: refused, not guessed from the /proc path.
        let stray = try #require(ContainerNetworkFacts(spec: spec(type: "container", sandbox: "s2", netns: "/proc/4242/ns/net")))
        #expect(throws: NetworkNamespace.Failure.self) { try pods.listenerNamespace(containerID: "c2", facts: stray).get() }
        let unnamed = try #require(ContainerNetworkFacts(spec: spec(type: "container", sandbox: nil, netns: "/proc/1/ns/net")))
        #expect(throws: NetworkNamespace.Failure.self) { try pods.listenerNamespace(containerID: "c3", facts: unnamed).get() }
        // A pod with a namespace whose container has none: refused, not put on the host.
        let hostile = try #require(ContainerNetworkFacts(spec: spec(type: "container", sandbox: "s1", netns: nil, entry: false)))
        #expect(throws: NetworkNamespace.Failure.self) { try pods.listenerNamespace(containerID: "c4", facts: hostile).get() }

        pods.forgetSandbox(id: "s1")
        #expect(throws: NetworkNamespace.Failure.self) { try pods.listenerNamespace(containerID: "c1", facts: app).get() }
    }

    @Test func hostNetworkPodsAndStandaloneContainers() throws {
        var pods = PodNetworks()
        let sandbox = try #require(ContainerNetworkFacts(spec: spec(type: "sandbox", sandbox: "h", netns: nil, entry: false)))
        pods.recordSandbox(id: "h", facts: sandbox)
        let app = try #require(ContainerNetworkFacts(spec: spec(type: "container", sandbox: "h", netns: nil, entry: false)))
        #expect(try pods.listenerNamespace(containerID: "c", facts: app).get() == .host)
        // A host-network pod whose container names a namespace: inconsistent, refused.
        let odd = try #require(ContainerNetworkFacts(spec: spec(type: "container", sandbox: "h", netns: "/proc/7/ns/net")))
        #expect(throws: NetworkNamespace.Failure.self) { try pods.listenerNamespace(containerID: "c", facts: odd).get() }
        // ctr run --with-ns network:PATH, and ctr run without it (a network entry with no path).
        let ctr = try #require(ContainerNetworkFacts(spec: spec(type: nil, sandbox: nil, netns: "/var/run/netns/x")))
        #expect(try pods.listenerNamespace(containerID: "t", facts: ctr).get() == .path("/var/run/netns/x"))
        let plain = try #require(ContainerNetworkFacts(spec: spec(type: nil, sandbox: nil, netns: nil)))
        #expect(try pods.listenerNamespace(containerID: "t", facts: plain).get() == .host)
    }
}

/// A listening TCP socket on 127.0.0.1 with a kernel-chosen port.
func loopbackListener() throws -> Int32 {
    try NetworkNamespace.listenOne(ListenAddress(address: "127.0.0.1", port: 0), backlog: 16).get()
}

func boundPort(of fd: Int32) -> UInt16? {
    SocketFacts.localAddress(fd).flatMap { $0.split(separator: ":").last.flatMap { UInt16($0) } }
}

/// connect() to 127.0.0.1:port in the calling thread's namespace: 0 or the errno.
func connectLoopback(_ port: UInt16) -> (fd: Int32, error: Int32) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if result == 0 { return (fd, 0) }
    let error = errno
    close(fd)
    return (-1, error)
}

/// Waits (hang guard only) until `fd` has a connection to accept, and accepts it.
func acceptOne(_ fd: Int32, timeoutMilliseconds: Int32 = 30_000) -> Int32 {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&entry, 1, timeoutMilliseconds) == 1 else { return -1 }
    return accept(fd, nil, nil)
}

func socketInode(_ fd: Int32) -> UInt64? {
    var info = stat()
    return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : nil
}

@Suite struct DescriptorHandoff {
    @Test func aListenerSentWithSCMRightsArrivesAsTheSameSocket() throws {
        let listener = try loopbackListener()
        defer { close(listener) }
        let (sender, receiver) = try #require(FDPassing.socketPair())
        defer {
            close(sender)
            close(receiver)
        }
        let message = try ListenerHandoffMessage(namespace: "k8s.io", id: "c1", annotation: "0", bound: ["x"]).encoded()
        #expect(FDPassing.send(socket: sender, payload: message, descriptors: [listener]) == nil)
        let received = try FDPassing.receive(socket: receiver, maxPayload: 4096).get()
        #expect(!received.truncated)
        #expect(try ListenerHandoffMessage(decoding: received.payload).id == "c1")
        let arrived = try #require(received.descriptors.first)
        defer { close(arrived) }
        #expect(received.descriptors.count == 1)
        #expect(arrived != listener)
        #expect(fcntl(arrived, F_GETFD) & FD_CLOEXEC != 0)
        #expect(SocketFacts.isListeningTCP(arrived))
        #expect(SocketFacts.localAddress(arrived) == SocketFacts.localAddress(listener))
        #expect(socketInode(arrived) == socketInode(listener))
        // One socket: a connection to the port is accepted through the received descriptor.
        let client = connectLoopback(try #require(boundPort(of: listener)))
        #expect(client.error == 0)
        defer { close(client.fd) }
        let accepted = acceptOne(arrived)
        #expect(accepted >= 0)
        close(accepted)
    }

    @Test func tooManyDescriptorsAreReportedTruncatedNotLost() throws {
        let listeners = try (0..<3).map { _ in try loopbackListener() }
        defer { for fd in listeners { close(fd) } }
        let (sender, receiver) = try #require(FDPassing.socketPair())
        defer {
            close(sender)
            close(receiver)
        }
        #expect(FDPassing.send(socket: sender, payload: [1], descriptors: listeners) == nil)
        let received = try FDPassing.receive(socket: receiver, maxPayload: 16, maxDescriptors: 1).get()
        #expect(received.truncated)
        for fd in received.descriptors { close(fd) }
    }

    @Test func messageFormat() throws {
        let message = ListenerHandoffMessage(namespace: "k8s.io", id: "abc", annotation: "8080,[::]:8080", bound: ["0.0.0.0:8080", "[::]:8080"])
        #expect(try ListenerHandoffMessage(decoding: message.encoded()) == message)
        #expect(throws: ListenerHandoffMessage.FormatError.self) {
            try ListenerHandoffMessage(namespace: "n", id: "a\nb", annotation: "", bound: []).encoded()
        }
        #expect(throws: ListenerHandoffMessage.FormatError.self) { try ListenerHandoffMessage(decoding: Array("hello".utf8)) }
        #expect(ListenerHandoffReply(decoding: ListenerHandoffReply.error("port in use").encoded) == .error("port in use"))
        #expect(ListenerHandoffReply(decoding: []) != .ok)
    }
}

/// A network namespace of the test's own (`ip netns add wasmlet-test-<random>`, loopback up),
/// deleted when the test ends.
final class TestNetworkNamespace {
    let name = "wasmlet-test-\(UInt32.random(in: 0...UInt32.max))"
    var path: String { "/var/run/netns/\(name)" }

    init() async throws {
        let added = try await runProcess("/usr/sbin/ip", ["netns", "add", name], environment: [:], directory: "/")
        guard added.status == 0 else { throw TestFailure("ip netns add \(name): \(added.stderr)") }
        let up = try await runProcess("/usr/sbin/ip", ["-n", name, "link", "set", "lo", "up"], environment: [:], directory: "/")
        guard up.status == 0 else {
            await remove()
            throw TestFailure("ip -n \(name) link set lo up: \(up.stderr)")
        }
    }

    func remove() async {
        _ = try? await runProcess("/usr/sbin/ip", ["netns", "del", name], environment: [:], directory: "/")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite(.enabled(if: getuid() == 0 && access("/usr/sbin/ip", X_OK) == 0, "needs root and iproute2"))
struct ListenersInANetworkNamespace {
    @Test func theListenerLivesInTheNamespaceNotOnTheHost() async throws {
        let namespace = try await TestNetworkNamespace()
        do {
            try check(namespace)
        } catch {
            await namespace.remove()
            throw error
        }
        await namespace.remove()
        #expect(access(namespace.path, F_OK) != 0)
    }

    private func check(_ namespace: TestNetworkNamespace) throws {
        let before = NetworkNamespace.currentIdentity
        let fds = try NetworkNamespace.listen(
            [ListenAddress(address: "127.0.0.1", port: 0)], inNamespaceAt: namespace.path, describedAs: "the test's namespace"
        ).get()
        let listener = try #require(fds.first)
        defer { close(listener) }
        // The binding thread entered the namespace; the calling thread never did.
        #expect(NetworkNamespace.currentIdentity.map { [$0.0, $0.1] } == before.map { [$0.0, $0.1] })
        let port = try #require(boundPort(of: listener))

        // The host's 127.0.0.1:PORT is not this listener: refused.
        let fromHost = connectLoopback(port)
        if fromHost.error == 0 { close(fromHost.fd) }
        #expect(fromHost.error == ECONNREFUSED)

        // From inside the namespace (a thread that entered it) the same address connects, and
        // the connection arrives on our descriptor.
        let fromInside = try NetworkNamespace.run(inNamespaceAt: namespace.path) { connectLoopback(port) }.get()
        #expect(fromInside.error == 0)
        defer { if fromInside.fd >= 0 { close(fromInside.fd) } }
        let accepted = acceptOne(listener)
        #expect(accepted >= 0)
        if accepted >= 0 { close(accepted) }

        // The port is taken in the namespace: a second bind fails, naming address and reason,
        // and leaves nothing open.
        let again = NetworkNamespace.listen(
            [ListenAddress(address: "127.0.0.1", port: 0), ListenAddress(address: "127.0.0.1", port: port)],
            inNamespaceAt: namespace.path, describedAs: "the pod's network namespace")
        guard case .failure(let failure) = again else {
            Issue.record("binding a port in use succeeded")
            return
        }
        #expect(failure.description.contains("127.0.0.1:\(port)"))
        #expect(failure.description.contains("Address already in use"))
        // An address the namespace does not have.
        let foreign = NetworkNamespace.listen(
            [ListenAddress(address: "192.0.2.1", port: 0)], inNamespaceAt: namespace.path, describedAs: "ns")
        guard case .failure(let notBindable) = foreign else {
            Issue.record("binding an address the namespace lacks succeeded")
            return
        }
        #expect(notBindable.description.contains("Cannot assign requested address"))
        // A namespace that does not exist.
        let missing = NetworkNamespace.listen([ListenAddress(address: "127.0.0.1", port: 0)], inNamespaceAt: namespace.path + "-gone", describedAs: "ns")
        guard case .failure(let gone) = missing else {
            Issue.record("a missing namespace was entered")
            return
        }
        #expect(gone.description.contains("cannot open the network namespace"))
    }
}
