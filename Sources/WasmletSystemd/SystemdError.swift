#if os(Linux)
import Glibc

/// A failed libsystemd call, carrying the errno it reported.
///
/// libsystemd returns failures as negative errno values; this keeps the call's name and
/// the positive errno so a startup log line can say what went wrong. Only start-up paths
/// (reading the watchdog configuration, taking inherited sockets) throw it: the
/// notification and journal paths the daemon uses while running return a result instead.
public struct SystemdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The libsystemd function (or check) that failed, e.g. `sd_listen_fds_with_names`.
    public let operation: String
    /// The positive errno value, e.g. `EINVAL`.
    public let errno: Int32

    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// Builds the error from libsystemd's negative-errno return convention.
    init(operation: String, returnValue: Int32) {
        self.init(operation: operation, errno: -returnValue)
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}
#endif
