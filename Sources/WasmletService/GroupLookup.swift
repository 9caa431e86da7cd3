import Glibc

/// Group and user-database look-ups (getgrnam_r), kept apart so the rest of the daemon never
/// touches the non-reentrant C APIs.
package enum GroupLookup {
    /// The gid of group `name` (a name, or a number as text), or nil when there is no such group.
    package static func gid(named name: String) -> gid_t? {
        var group = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        let status = getgrnam_r(name, &group, &buffer, buffer.count, &result)
        if status == 0, let result { return result.pointee.gr_gid }
        if let number = gid_t(name) { return number }
        return nil
    }

    /// The supplementary groups of process `pid`, from the `Groups:` line of /proc/<pid>/status.
    /// SO_PEERCRED carries only the primary gid, so this is how a member of the socket's group
    /// whose primary group is another one is recognised. nil when the process is gone.
    package static func supplementaryGroups(ofProcess pid: Int32) -> [gid_t]? {
        let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("Groups:") {
            return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap {
                gid_t($0)
            }
        }
        return []
    }
}
