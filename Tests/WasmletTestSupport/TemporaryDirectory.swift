import Foundation
import Glibc

/// A fresh, short directory `/tmp/<prefix>-XXXXXX` (socket paths must fit in 107 bytes), removed
/// on deinit or by `remove()`. Mode 0755 so an unprivileged test client can reach a socket inside.
package final class TemporaryDirectory: @unchecked Sendable {
    package let path: String

    package init(prefix: String = "wlt") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.init(rawValue: errno)!) }
        path = String(cString: made)
        chmod(path, 0o755)
    }

    package func file(_ name: String) -> String { path + "/" + name }

    package func remove() { try? FileManager.default.removeItem(atPath: path) }

    deinit { remove() }
}
