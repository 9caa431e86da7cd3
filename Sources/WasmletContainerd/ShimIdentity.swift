import Glibc
import WasmletConventions
import WasmletTTRPC

/// Who a containerd task request comes from. The shim relays containerd's frames unchanged
/// except for request metadata it appends (`ShimMetadataKey`, shared with the shim): its pid,
/// containerd's namespace, the pod group and containerd's ttrpc address, where this daemon
/// publishes the task's events.
struct ShimIdentity: Sendable, Equatable {
    static let pidKey = ShimMetadataKey.shimPID
    static let namespaceKey = ShimMetadataKey.namespace
    static let groupKey = ShimMetadataKey.group
    static let ttrpcAddressKey = ShimMetadataKey.ttrpcAddress
    /// Set by `containerd-shim-wasmlet-v1 delete`: end the instance, whatever its state.
    static let cleanupKey = ShimMetadataKey.cleanup

    /// containerd's namespace ("default", "k8s.io", ...); the instance namespace too.
    var namespace: String
    /// The shim's pid: what containerd and kubelet see as the task's pid.
    var shimPID: UInt32
    /// The pod's sandbox id, or the container id (containers of one pod share a shim).
    var group: String
    /// containerd's ttrpc socket for events; empty when the caller gave none (tests, direct use).
    var ttrpcAddress: String
    var isCleanup: Bool

    /// Reads the identity from a call's metadata. The namespace may also come from containerd's
    /// own metadata key; a call with neither cannot be placed and is refused.
    init(_ context: TTRPCCallContext) throws {
        let metadata = context.metadata
        guard let namespace = metadata[Self.namespaceKey] ?? context.containerdNamespace, !namespace.isEmpty else {
            throw TTRPCError.invalidArgument(
                "task request without a containerd namespace (metadata \(Self.namespaceKey) or \(TTRPCMetadata.containerdNamespaceKey))")
        }
        self.namespace = namespace
        // A task needs a non-zero pid stable for its life; without a shim, the daemon's own.
        self.shimPID = metadata[Self.pidKey].flatMap { UInt32($0) }.flatMap { $0 == 0 ? nil : $0 } ?? UInt32(getpid())
        self.group = metadata[Self.groupKey] ?? ""
        self.ttrpcAddress = metadata[Self.ttrpcAddressKey] ?? ""
        self.isCleanup = metadata[Self.cleanupKey] == "1"
    }
}
