import Foundation
import Glibc

/// What the store's file operations throw: the operation and `strerror`, for the log and the
/// caller.
enum StoreError: Error, CustomStringConvertible {
    case io(String)
    var description: String { if case .io(let message) = self { message } else { "" } }
}

/// File-system steps shared by `InstanceStore`, `JournalWriter` and `JournalCheckpoints`, so that
/// the writer needs nothing of the store that owns it.
enum StoreFiles {
    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open directory \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot fsync directory \(path)") }
    }

    /// mkdir that tolerates an existing directory and makes a new one durable in its parent.
    static func makeDirectory(_ path: String, mode: mode_t) throws {
        if mkdir(path, mode) == 0 {
            try syncDirectory((path as NSString).deletingLastPathComponent)
            return
        }
        if errno == EEXIST { return }
        if errno == ENOENT {
            try makeDirectory((path as NSString).deletingLastPathComponent, mode: 0o755)
            try makeDirectory(path, mode: mode)
            return
        }
        throw failure("cannot create directory \(path)")
    }

    static func failure(_ what: String) -> StoreError {
        .io("\(what): \(String(cString: strerror(errno)))")
    }
}
