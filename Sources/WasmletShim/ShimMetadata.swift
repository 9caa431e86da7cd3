// The request metadata the shim adds to every request it forwards to wasmletd, so the daemon
// knows which shim (and so which pod, namespace and containerd) a task call comes from.
// The daemon mirrors these key names; change them on both sides together.

public enum ShimMetadata {
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

    /// The entries the shim appends to a forwarded request.
    public static func entries(pid: Int32, namespace: String, group: String, ttrpcAddress: String) -> [MetadataEntry] {
        [
            MetadataEntry(shimPID, String(pid)),
            MetadataEntry(Self.namespace, namespace),
            MetadataEntry(Self.group, group),
            MetadataEntry(Self.ttrpcAddress, ttrpcAddress),
        ]
    }

    /// `entries` as repeated field 5 of `ttrpc.Request`. Protobuf concatenation merges messages
    /// and appends to repeated fields, so appending these bytes to any encoded Request adds the
    /// entries without decoding or re-encoding the rest.
    public static func encode(_ entries: [MetadataEntry]) -> [UInt8] {
        var writer = ProtoWriter()
        for entry in entries {
            writer.message(5) { keyValue in
                keyValue.string(1, entry.key)
                keyValue.string(2, entry.value)
            }
        }
        return writer.bytes
    }

    /// A request payload with encoded metadata entries appended.
    public static func appending(_ encodedEntries: [UInt8], to request: [UInt8]) -> [UInt8] {
        request + encodedEntries
    }
}
