/// A host directory given to a guest.
public struct PreopenMapping: Sendable, Hashable {
    /// Absolute and normalised ("." and ".." resolved).
    public var hostPath: String
    /// Where the guest sees it: as written.
    public var guestPath: String
    public var readOnly: Bool

    public init(hostPath: String, guestPath: String, readOnly: Bool) {
        self.hostPath = hostPath
        self.guestPath = guestPath
        self.readOnly = readOnly
    }
}

/// Preopen mappings, `HOST[:GUEST][:ro|:rw]` (`wasmletctl run --dir`, `wasmlet-run --dir`).
/// The host directory is made absolute against the current directory; the guest path defaults
/// to the host path as written; neither may be empty, and a path cannot hold a `:`.
public enum PreopenSyntax {
    public static func parse(_ mapping: String, currentDirectory: String) throws(ParseError) -> PreopenMapping {
        var parts = mapping.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var readOnly = false
        if parts.count > 1, parts.last == "ro" || parts.last == "rw" {
            readOnly = parts.removeLast() == "ro"
        }
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts.count == 1 || !parts[1].isEmpty else {
            throw ParseError("directory mapping \"\(mapping)\" is not HOST[:GUEST][:ro]")
        }
        return PreopenMapping(
            hostPath: absolutePath(parts[0], currentDirectory: currentDirectory),
            guestPath: parts.count == 2 ? parts[1] : parts[0], readOnly: readOnly)
    }

    /// `path` made absolute against `currentDirectory`, with "." and ".." segments resolved
    /// lexically (symbolic links are left alone).
    public static func absolutePath(_ path: String, currentDirectory: String) -> String {
        let full = path.hasPrefix("/") ? path : currentDirectory + "/" + path
        var segments: [Substring] = []
        for segment in full.split(separator: "/") {
            switch segment {
            case ".": continue
            case "..": if !segments.isEmpty { segments.removeLast() }
            default: segments.append(segment)
            }
        }
        return "/" + segments.joined(separator: "/")
    }
}
