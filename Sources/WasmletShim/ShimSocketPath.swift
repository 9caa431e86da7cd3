// Where a shim listens, by containerd's convention, so that every `start` of one pod's
// containers finds the same shim: /run/containerd/s/<hex sha256(address/namespace/group)>.

public enum ShimSocketPath {
    public static let defaultDirectory = "/run/containerd/s"

    /// `$WASMLET_SHIM_SOCKET_DIR` (tests) or /run/containerd/s.
    public static func directory() -> String {
        if let value = ShimContext.environment("WASMLET_SHIM_SOCKET_DIR"), !value.isEmpty {
            return value.count > 1 && value.hasSuffix("/") ? String(value.dropLast()) : value
        }
        return defaultDirectory
    }

    /// containerd hashes filepath.Join(address, namespace, group); a trailing slash on the
    /// address would be cleaned away by Join, so it is here too.
    public static func path(address: String, namespace: String, group: String, directory: String) -> String {
        var cleanAddress = Substring(address)
        while cleanAddress.count > 1 && cleanAddress.hasSuffix("/") { cleanAddress = cleanAddress.dropLast() }
        return directory + "/" + SHA256.hexDigest(cleanAddress + "/" + namespace + "/" + group)
    }

    /// The group a task belongs to: its pod sandbox id from the bundle's config.json, else its own id.
    public static func group(bundle: String, id: String) -> String {
        let specPath = bundle.isEmpty ? "config.json" : bundle + "/config.json"
        if let sandbox = SpecAnnotations.value(forKey: SpecAnnotations.sandboxIDKey, inFile: specPath),
            !sandbox.isEmpty
        {
            return sandbox
        }
        return id
    }
}
