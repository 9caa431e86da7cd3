/// The request metadata keys the shim adds to every request it forwards to wasmletd, so the
/// daemon knows which shim (and so which pod, namespace and containerd) a task call comes from.
/// The shim writes them (`ShimMetadata`), the daemon reads them (`ShimIdentity`).
public enum ShimMetadataKey {
    /// The shim's process id, decimal. The daemon reports it as the task's pid.
    public static let shimPID = "wasmlet-shim-pid"
    /// containerd's namespace, from the shim's `-namespace` flag.
    public static let namespace = "wasmlet-shim-namespace"
    /// The shim's group: the pod sandbox id (`io.kubernetes.cri.sandbox-id`) or the task id.
    public static let group = "wasmlet-shim-group"
    /// containerd's ttrpc socket (`$TTRPC_ADDRESS` given to `start`), for publishing events.
    public static let ttrpcAddress = "wasmlet-shim-ttrpc-address"
    /// "1" on the `Delete` sent by the `delete` subcommand: the shim is gone, so the daemon must
    /// kill the instance itself, wait briefly and delete it.
    public static let cleanup = "wasmlet-shim-cleanup"
    /// The key under which containerd sends its namespace (ttrpc convention).
    public static let containerdNamespace = "containerd-namespace-ttrpc"
}
