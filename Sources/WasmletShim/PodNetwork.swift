// Which network namespace a container's listeners go in, decided from OCI specs alone.
//
// Under CRI the pod sandbox ("pause") container's spec names the pod's namespace: a
// `linux.namespaces` entry of type `network` whose `path` CNI set up (/var/run/netns/cni-...).
// The pod's app containers get `/proc/<sandbox pid>/ns/net` instead, built from the pid this
// shim reported for the sandbox task. That pid is the shim's own (guests have no process), and
// the shim lives in the host namespace: following it would put the listener on the host
// network. So the shim never follows an app container's path. It records the sandbox's path
// when it relays the sandbox's Create (one shim serves the whole pod: containerd groups a
// pod's tasks by `io.kubernetes.cri.sandbox-id`), keyed by the sandbox id, and an app
// container's listeners go in the namespace recorded for its sandbox id.
//
// - no network entry with a path (a host-network pod; containerd 1.6 sets no other marker of
//   it): the host's namespace, where the shim already is;
// - a CRI app container whose sandbox this shim has not seen, or whose spec disagrees with the
//   recorded sandbox (a path where the pod has none, or none where it has one): Create fails,
//   rather than guess and land on the host network by accident;
// - not CRI (`ctr run --with-ns network:PATH`): the path as given.

public struct ContainerNetworkFacts: Sendable, Equatable {
    public static let listenAnnotation = "wasmlet.dev/listen"
    public static let containerTypeAnnotation = "io.kubernetes.cri.container-type"

    public enum Kind: Sendable, Equatable {
        /// The CRI pod sandbox (`io.kubernetes.cri.container-type=sandbox`).
        case sandbox
        /// A CRI app container (`container`).
        case container
        /// No CRI annotation: ctr or another containerd client.
        case standalone
    }

    public var kind: Kind
    /// `io.kubernetes.cri.sandbox-id` (a sandbox's is its own id).
    public var sandboxID: String?
    /// The `path` of the `linux.namespaces` entry of type `network`, when it has one.
    public var networkNamespacePath: String?
    /// `wasmlet.dev/listen`, when set.
    public var listen: String?

    public init(kind: Kind, sandboxID: String? = nil, networkNamespacePath: String? = nil, listen: String? = nil) {
        self.kind = kind
        self.sandboxID = sandboxID
        self.networkNamespacePath = networkNamespacePath
        self.listen = listen
    }

    /// Reads the facts from a config.json's bytes; nil when it is not valid JSON.
    public init?(spec json: [UInt8]) {
        var scanner = JSONScanner(json)
        guard let document = scanner.parseDocument() else { return nil }
        let annotations = document["annotations"]
        switch annotations?[Self.containerTypeAnnotation]?.string {
        case "sandbox": kind = .sandbox
        case "container": kind = .container
        default: kind = .standalone
        }
        sandboxID = annotations?[SpecAnnotations.sandboxIDKey]?.string
        listen = annotations?[Self.listenAnnotation]?.string
        networkNamespacePath = nil
        for entry in document["linux"]?["namespaces"]?.array ?? [] where entry["type"]?.string == "network" {
            if let path = entry["path"]?.string, !path.isEmpty { networkNamespacePath = path }
        }
    }
}

/// Where listeners are created.
public enum ListenerNamespace: Sendable, Equatable, CustomStringConvertible {
    /// The host's network namespace (the shim's own).
    case host
    /// The namespace at this path.
    case path(String)

    public var description: String {
        switch self {
        case .host: "the host network namespace"
        case .path(let path): "the network namespace \(path)"
        }
    }
}

/// The network namespace of each pod sandbox this shim has created, by sandbox id.
public struct PodNetworks: Sendable {
    private var sandboxes: [String: ListenerNamespace] = [:]

    public init() {}

    /// Called for every sandbox Create the shim relays.
    public mutating func recordSandbox(id: String, facts: ContainerNetworkFacts) {
        sandboxes[id] = facts.networkNamespacePath.map(ListenerNamespace.path) ?? .host
    }

    public mutating func forgetSandbox(id: String) {
        sandboxes[id] = nil
    }

    public func namespace(ofSandbox id: String) -> ListenerNamespace? { sandboxes[id] }

    /// Where the listeners of container `id` go, or why that cannot be known.
    public func listenerNamespace(containerID id: String, facts: ContainerNetworkFacts) -> Result<ListenerNamespace, NetworkNamespace.Failure> {
        func failure(_ why: String) -> Result<ListenerNamespace, NetworkNamespace.Failure> {
            .failure(NetworkNamespace.Failure(description: "cannot place the listeners of container \(id): \(why)"))
        }
        switch facts.kind {
        case .standalone:
            return .success(facts.networkNamespacePath.map(ListenerNamespace.path) ?? .host)
        case .sandbox:
            return .success(sandboxes[id] ?? facts.networkNamespacePath.map(ListenerNamespace.path) ?? .host)
        case .container:
            guard let sandbox = facts.sandboxID, !sandbox.isEmpty else {
                return failure("its spec names no pod sandbox (annotation \(SpecAnnotations.sandboxIDKey))")
            }
            let recorded = sandboxes[sandbox]
            switch (recorded, facts.networkNamespacePath) {
            case (.path(let path)?, _?):
                return .success(.path(path))
            case (.host?, nil):
                return .success(.host)
            case (nil, nil):
                // A host-network pod's container carries no network namespace at all.
                return .success(.host)
            case (nil, _?):
                return failure(
                    "the pod's network namespace is unknown: its sandbox \(sandbox) was not created by this shim, and the container's own path (built from the pid reported for the sandbox) would name the host's network")
            case (.host?, let path?):
                return failure("its pod sandbox \(sandbox) is on the host network, but the container asks for the network namespace \(path)")
            case (.path(let path)?, nil):
                return failure("its pod has the network namespace \(path), but the container's spec has none: refusing to listen on the host network")
            }
        }
    }
}
