import Foundation
import Glibc

/// Resolves a path inside a container's rootfs the way the container would see it: symlinks
/// are followed with the rootfs as `/`, so a link to `/app.wasm` or `../../etc/shadow` can
/// never lead the daemon (which runs as root) outside the image.
enum RootfsPath {
    /// The host path of `guestPath` under `rootfs`, symlinks resolved; `relativeTo` is the
    /// guest directory a relative path starts from.
    static func resolve(_ guestPath: String, in rootfs: String, relativeTo cwd: String = "/") throws -> String {
        var pending = components(guestPath.hasPrefix("/") ? guestPath : cwd + "/" + guestPath)
        var resolved: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let part = pending.removeFirst()
            if part == ".." {
                if !resolved.isEmpty { resolved.removeLast() }
                continue
            }
            let host = rootfs + "/" + (resolved + [part]).joined(separator: "/")
            var info = stat()
            if lstat(host, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
                hops += 1
                guard hops <= 40 else { throw TaskError.invalidSpec("too many symlinks resolving \(guestPath) in the rootfs") }
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: host)
                if target.hasPrefix("/") { resolved.removeAll() }
                pending = components(target) + pending
                continue
            }
            resolved.append(part)
        }
        return rootfs + "/" + resolved.joined(separator: "/")
    }

    private static func components(_ path: String) -> [String] {
        path.split(separator: "/").map(String.init).filter { $0 != "." && !$0.isEmpty }
    }
}
