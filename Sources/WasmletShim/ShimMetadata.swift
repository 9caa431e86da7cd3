// The request metadata the shim adds to every request it forwards to wasmletd, so the daemon
// knows which shim (and so which pod, namespace and containerd) a task call comes from. The
// key names are `ShimMetadataKey`'s, which the daemon reads too.

import WasmletConventions

public enum ShimMetadata {
    /// The entries the shim appends to a forwarded request.
    public static func entries(pid: Int32, namespace: String, group: String, ttrpcAddress: String) -> [MetadataEntry] {
        [
            MetadataEntry(ShimMetadataKey.shimPID, String(pid)),
            MetadataEntry(ShimMetadataKey.namespace, namespace),
            MetadataEntry(ShimMetadataKey.group, group),
            MetadataEntry(ShimMetadataKey.ttrpcAddress, ttrpcAddress),
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
