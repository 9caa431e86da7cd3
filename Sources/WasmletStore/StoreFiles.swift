import Foundation
import Glibc

/// What the store's file operations throw: the operation and `strerror`, for the log and the
/// caller.
package struct StoreError: Error, CustomStringConvertible {
    package var description: String
    /// The errno of the system call that failed, if one did.
    package var code: Int32?

    static func io(_ message: String, code: Int32? = nil) -> StoreError { StoreError(description: message, code: code) }

    /// The file system is full (or the quota used up): the caller's request cannot be made
    /// durable until space returns, which is not the daemon's fault (RESOURCE_EXHAUSTED).
    package var isOutOfSpace: Bool { code == ENOSPC || code == EDQUOT }
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
        let code = errno
        return .io("\(what): \(String(cString: strerror(code)))", code: code)
    }
}
