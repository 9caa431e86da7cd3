// Where a shim listens, by containerd's convention, so that every `start` of one pod's
// containers finds the same shim: /run/containerd/s/<hex sha256(address/namespace/group)>.

#if canImport(Glibc)
import Glibc
#endif

public enum ShimSocketPath {
    public static let defaultDirectory = "/run/containerd/s"

    /// Where `start` put a socket_dir from containerd's bootstrap params, for `delete` (which
    /// gets no params): a symlink in the bundle, as containerd's own shims keep it.
    static let rememberedDirectoryLink = "wasmlet-socket-dir"

    /// `configured` (containerd's socket_dir), else `$WASMLET_SHIM_SOCKET_DIR` (tests), else
    /// /run/containerd/s.
    public static func directory(configured: String? = nil) -> String {
        for value in [configured, ShimContext.environment("WASMLET_SHIM_SOCKET_DIR")] {
            if let value, !value.isEmpty {
                return value.count > 1 && value.hasSuffix("/") ? String(value.dropLast()) : value
            }
        }
        return defaultDirectory
    }

    static func remember(directory: String, bundle: String) {
        let link = bundle + "/" + rememberedDirectoryLink
        unlink(link)
        _ = symlink(directory, link)
    }

    /// The directory `start` remembered in `bundle`, else the usual one.
    static func rememberedDirectory(bundle: String) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(bundle + "/" + rememberedDirectoryLink, &buffer, buffer.count - 1)
        guard count > 0 else { return directory() }
        return directory(configured: String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self))
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
