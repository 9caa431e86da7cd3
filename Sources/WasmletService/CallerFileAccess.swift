import Glibc
import WasmletRuntime
import WasmletTTRPC

/// What a caller other than root (or the daemon's own user) may name on the host: only files it
/// could open itself. The daemon opens module files, preopens and stdio with its own rights, so
/// without this a member of the API socket's group could run a module it cannot read, hand a
/// guest a directory it cannot enter, and tell from the errors whether any host path exists.
///
/// The check is the kernel's for the caller's uid and groups, by mode bits: search permission on
/// every directory on the way (of the path as given, and of the path its symlinks resolve to),
/// then read or write permission on the file itself. Without search permission the answer is
/// PERMISSION_DENIED whether the file exists or not, so nothing is learnt from it. ACLs are not
/// read, so a file an ACL alone opens to the caller is refused. It is a check at Create: a
/// preopen then gives the guest the daemon's rights beneath that directory.
package struct CallerFileAccess: Sendable {
    let uid: uid_t
    let groups: Set<gid_t>

    package init(uid: uid_t, groups: Set<gid_t>) {
        self.uid = uid
        self.groups = groups
    }

    /// The caller's access, or nil when it may name anything: root, the daemon's own user, or a
    /// call without a peer (made in-process; the API socket refuses a connection whose
    /// credentials it cannot read before any call, see PeerAuthorizer).
    package static func of(_ peer: PeerCredentials?) -> CallerFileAccess? {
        guard let peer else { return nil }
        if peer.uid == 0 || peer.uid == getuid() { return nil }
        let supplementary = GroupLookup.supplementaryGroups(ofProcess: peer.pid) ?? []
        return CallerFileAccess(uid: peer.uid, groups: Set(supplementary + [peer.gid]))
    }

    package enum Want: Sendable {
        case read, write, readDirectory, writeDirectory
    }

    /// Throws PERMISSION_DENIED naming `what` and the path when the caller could not open it
    /// so. A path that does not exist is left to the daemon's own error (its directory was
    /// searchable, so the caller can see that itself), except for `.write`, which needs the
    /// parent directory writable to create the file.
    package func check(_ path: String, _ want: Want, what: String) throws(RuntimeError) {
        let refused = RuntimeError(
            .permissionDenied, "permission denied: uid \(uid) may not \(Self.verb(want)) \(what) \(path) (the daemon opens only what its caller could)")
        guard path.hasPrefix("/") else {
            throw RuntimeError(.invalidArgument, "\(what) \(path) must be an absolute path")
        }
        guard searchable(directoriesOf: path) else { throw refused }
        var info = stat()
        guard stat(path, &info) == 0 else {
            if want == .write, errno == ENOENT {
                let parent = Self.parent(of: path)
                guard stat(parent, &info) == 0, allows(info, write: true, execute: true) else { throw refused }
            }
            return
        }
        if let resolved = Self.realPath(path), resolved != path {
            guard searchable(directoriesOf: resolved) else { throw refused }
        }
        let allowed: Bool
        switch want {
        case .read: allowed = allows(info, read: true)
        case .write: allowed = allows(info, write: true)
        case .readDirectory: allowed = allows(info, read: true, execute: true)
        case .writeDirectory: allowed = allows(info, read: true, write: true, execute: true)
        }
        guard allowed else { throw refused }
    }

    /// Every path a Create names on the host, checked for this caller.
    package func check(_ spec: InstanceSpec, modulePaths: [String]) throws(RuntimeError) {
        for path in modulePaths { try check(path, .read, what: "module") }
        for preopen in spec.preopens {
            try check(preopen.hostPath, preopen.readOnly ? .readDirectory : .writeDirectory, what: "preopen")
        }
        if let stdin = spec.stdio.stdin { try check(stdin, .read, what: "stdin") }
        if let stdout = spec.stdio.stdout { try check(stdout, .write, what: "stdout") }
        if let stderr = spec.stdio.stderr { try check(stderr, .write, what: "stderr") }
    }

    private func searchable(directoriesOf path: String) -> Bool {
        var prefix = ""
        for component in path.split(separator: "/").dropLast() {
            prefix += "/" + component
            var info = stat()
            // A directory that is not there: the caller's own open would fail the same way.
            guard stat(prefix, &info) == 0 else { return true }
            guard allows(info, execute: true) else { return false }
        }
        return true
    }

    /// POSIX permission bits as the kernel applies them: the owner's if the caller owns the
    /// file, else the group's if it is in the file's group, else the others'.
    private func allows(_ info: stat, read: Bool = false, write: Bool = false, execute: Bool = false) -> Bool {
        let shift: mode_t = info.st_uid == uid ? 6 : groups.contains(info.st_gid) ? 3 : 0
        let bits = (info.st_mode >> shift) & 0o7
        return (!read || bits & 0o4 != 0) && (!write || bits & 0o2 != 0) && (!execute || bits & 0o1 != 0)
    }

    private static func verb(_ want: Want) -> String {
        switch want {
        case .read: "read"
        case .write: "write"
        case .readDirectory: "read"
        case .writeDirectory: "read and write"
        }
    }

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
