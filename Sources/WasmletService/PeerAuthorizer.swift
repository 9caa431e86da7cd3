import Glibc
import WasmletTTRPC

/// Who may use the API: root, the daemon's own user, and members of the configured group.
///
/// The socket's mode (0660 root:group) already keeps others from connecting; this check on the
/// kernel-reported credentials (SO_PEERCRED) is the second line, and the only one when the
/// socket came from systemd with a looser mode or was reached through a shared mount.
/// Membership counts the primary gid and the supplementary groups (from /proc/<pid>/status),
/// because SO_PEERCRED carries only the primary one.
package struct PeerAuthorizer: Sendable {
    let daemonUID: uid_t
    let groupID: gid_t?

    package init(daemonUID: uid_t, groupID: gid_t?) {
        self.daemonUID = daemonUID
        self.groupID = groupID
    }

    package func allows(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == daemonUID { return true }
        guard let groupID else { return false }
        if peer.gid == groupID { return true }
        return GroupLookup.supplementaryGroups(ofProcess: peer.pid)?.contains(groupID) ?? false
    }
}
