// The shim's part of a container's listeners (annotation `wasmlet.dev/listen`): at Create,
// before relaying it, parse the list, find the network namespace (PodNetwork.swift), create
// the listening sockets there (NetworkNamespace.swift) and hand them to wasmletd (SCM_RIGHTS,
// Sources/WasmletFDHandoff). wasmletd's Create then claims them for the instance by
// (namespace, id). Any failure fails the Create with a message ctr and `kubectl describe`
// show, and leaves no socket behind: the shim closes its copies in every case, and the daemon
// closes the ones it got when no Create claims them (or the Create fails).
//
// This runs on the shim's one serving thread and blocks it for the bind (a short-lived
// thread of its own, see NetworkNamespace) and the handoff's round trip (bounded: 5 s), as
// the rootfs mounts already do.

import WasmletFDHandoff

#if canImport(Glibc)
import Glibc
import WasmletConventions
#endif

public enum ShimListeners {
    /// Reads the spec's network facts; nil when there is no readable config.json (the daemon
    /// then fails the Create on its own, with the reason).
    public static func facts(bundle: String) -> ContainerNetworkFacts? {
        guard !bundle.isEmpty, let bytes = FileIO.readFile(bundle + "/config.json", limit: 16 << 20) else { return nil }
        return ContainerNetworkFacts(spec: bytes)
    }

    /// Binds the listeners `facts` asks for and hands them to the daemon. nil on success (or
    /// when none are asked for), else the error answer for the Create.
    public static func prepare(
        id: String, facts: ContainerNetworkFacts, pods: PodNetworks, context: ShimContext
    ) -> TTRPCResponse? {
        guard let listen = facts.listen else { return nil }
        if facts.kind == .sandbox {
            // Pod annotations reach the sandbox's spec too (pod_annotations); the pause guest
            // serves nothing, and binding here would take the app container's port.
            context.log.debug("Create \(id): pod sandbox; ignoring \(ContainerNetworkFacts.listenAnnotation)")
            return nil
        }
        let place: ListenerNamespace
        switch pods.listenerNamespace(containerID: id, facts: facts) {
        case .success(let found): place = found
        case .failure(let error): return refuse(id, StatusCode.failedPrecondition, "\(error)", context)
        }
        // Inside a pod (or any namespace of its own) a bare port listens on every address; on
        // the host, outside a pod, only on loopback, as `wasmletctl run --listen` does.
        let inPod = facts.kind == .container || place != .host
        let addresses: [ListenAddress]
        do {
            addresses = try ListenAddress.parseList(
                listen, defaultAddress: inPod ? ListenAddress.podDefaultAddress : "127.0.0.1")
        } catch {
            return refuse(
                id, StatusCode.invalidArgument, "bad container spec: annotation \(ContainerNetworkFacts.listenAnnotation): \(error)",
                context)
        }
        let path: String?
        switch place {
        case .host:
            path = nil
        case .path(let namespacePath):
            path = namespacePath
            // Defence in depth: a CRI container whose pod namespace turns out to be the host's
            // would be exposed on the node's network.
            if facts.kind == .container, let target = NetworkNamespace.identity(ofNamespaceAt: namespacePath),
                let own = NetworkNamespace.identity(ofNamespaceAt: "/proc/self/ns/net"), target == own
            {
                return refuse(
                    id, StatusCode.failedPrecondition,
                    "the pod's network namespace \(namespacePath) is the host's: refusing to listen on the host network", context)
            }
        }
        let described = facts.kind == .container ? "the pod's network namespace (\(path ?? "host network"))" : "\(place)"
        let descriptors: [Int32]
        switch NetworkNamespace.listen(addresses, inNamespaceAt: path, describedAs: described) {
        case .success(let made): descriptors = made
        case .failure(let error): return refuse(id, StatusCode.failedPrecondition, "\(error)", context)
        }
        defer { for fd in descriptors { close(fd) } }  // the daemon has its own copies
        let bound = descriptors.map { SocketFacts.localAddress($0) ?? "?" }
        let message = ListenerHandoffMessage(namespace: context.namespace, id: id, annotation: listen, bound: bound)
        let socket = ListenerHandoffMessage.socketPath(forAPISocket: context.daemonSocketPath)
        switch HandoffSocket.handOff(message, descriptors: descriptors, to: socket) {
        case .ok:
            context.log.debug("Create \(id): handed \(bound.joined(separator: ", ")) in \(place) to wasmletd")
            return nil
        case .error(let why):
            return refuse(id, StatusCode.unavailable, "listeners \(bound.joined(separator: ", ")): \(why)", context)
        }
    }

    private static func refuse(_ id: String, _ code: Int32, _ message: String, _ context: ShimContext) -> TTRPCResponse {
        context.log.error("Create \(id): \(message)")
        return .error(code, message)
    }
}
