#if os(Linux)
import CSystemd
import Glibc

/// The address family of an inherited listening socket.
public enum SocketFamily: Sendable, Equatable, CustomStringConvertible {
    /// `AF_UNIX`, e.g. `ListenStream=/run/wasmlet/wasmlet.sock`.
    case unix
    /// `AF_INET`, e.g. `ListenStream=127.0.0.1:9464`.
    case ipv4
    /// `AF_INET6`, e.g. `ListenStream=[::1]:9464`.
    case ipv6
    /// Either `AF_INET` or `AF_INET6`: for an expectation that accepts both.
    /// Never reported as the family of a socket.
    case internet

    public var description: String {
        switch self {
        case .unix: "unix"
        case .ipv4: "ipv4"
        case .ipv6: "ipv6"
        case .internet: "internet"
        }
    }
}

/// One listening stream socket handed over by systemd.
public struct ListeningSocket: Sendable, Equatable, CustomStringConvertible {
    /// The descriptor, `SD_LISTEN_FDS_START` (3) or above. The daemon owns it from now on.
    public let fileDescriptor: Int32
    /// The socket's `FileDescriptorName=` (e.g. `api`, `metrics`); systemd's default is
    /// the socket unit's name, and `unknown` when the manager sent no names.
    public let name: String
    /// The verified family: ``SocketFamily/unix``, ``SocketFamily/ipv4`` or ``SocketFamily/ipv6``.
    public let family: SocketFamily

    public init(fileDescriptor: Int32, name: String, family: SocketFamily) {
        self.fileDescriptor = fileDescriptor
        self.name = name
        self.family = family
    }

    public var description: String { "fd \(fileDescriptor) '\(name)' (\(family))" }
}

/// Takes the listening sockets that systemd passed to the daemon (`wasmletd.socket`).
///
/// Why: with socket activation systemd owns `/run/wasmlet/wasmlet.sock`. It exists (with
/// the unit's owner and mode) before the daemon starts, clients connecting during start-up
/// or a restart queue instead of failing, and a crash does not drop the listening socket.
/// When the daemon was not socket-activated (started by hand, in tests), this returns an
/// empty array and the daemon binds the socket itself.
///
/// Call ``takeListeningSockets(expectedFamilies:)`` once, early in `main` on the main
/// thread, before any thread spawns a child process: it reads and then unsets the
/// environment, and marks the descriptors close-on-exec.
public enum SocketActivation {
    /// Why the inherited sockets were refused.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// `sd_listen_fds_with_names` failed (malformed `LISTEN_*` variables).
        case listenFDs(SystemdError)
        /// Setting `FD_CLOEXEC` failed.
        case closeOnExec(fileDescriptor: Int32, SystemdError)
        /// The descriptor is not a listening stream socket of the family expected for its
        /// name (`expected == nil`: not a listening unix/IPv4/IPv6 stream socket at all).
        case unexpectedSocket(fileDescriptor: Int32, name: String, expected: SocketFamily?)

        public var description: String {
            switch self {
            case .listenFDs(let error):
                "cannot read inherited sockets: \(error)"
            case .closeOnExec(let fd, let error):
                "cannot set close-on-exec on inherited fd \(fd): \(error)"
            case .unexpectedSocket(let fd, let name, let expected?):
                "inherited fd \(fd) '\(name)' is not a listening \(expected) stream socket"
            case .unexpectedSocket(let fd, let name, nil):
                "inherited fd \(fd) '\(name)' is not a listening unix, IPv4 or IPv6 stream socket"
            }
        }
    }

    /// The first inherited descriptor, `SD_LISTEN_FDS_START`.
    public static let firstFileDescriptor: Int32 = 3

    /// Returns the inherited listening sockets in descriptor order, or `[]` when the daemon
    /// was not socket-activated (no `LISTEN_FDS`, or `LISTEN_PID` names another process).
    ///
    /// Uses `sd_listen_fds_with_names` and then, for each descriptor:
    /// 1. sets `FD_CLOEXEC`, so guests' or helpers' child processes never inherit it;
    /// 2. checks it with `sd_is_socket_unix`/`sd_is_socket` (`sd_is_socket_inet` for
    ///    ``SocketFamily/internet``) to be a *listening* `SOCK_STREAM` socket of the family
    ///    `expectedFamilies[name]`; a name without an expectation may be any of unix,
    ///    IPv4, IPv6, and the family found is reported.
    ///
    /// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are always removed from the
    /// environment, so a child cannot take them for its own.
    ///
    /// - Parameter expectedFamilies: e.g. `["api": .unix, "metrics": .internet]`.
    /// - Throws: ``Failure`` when the variables are malformed or a descriptor is not what
    ///   its name promises; a unit file that hands the daemon the wrong socket is a
    ///   deployment error the daemon should refuse to start with.
    public static func takeListeningSockets(
        expectedFamilies: [String: SocketFamily] = [:]
    ) throws(Failure) -> [ListeningSocket] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let count = sd_listen_fds_with_names(1, &names)
        defer { freeStringArray(names) }
        if count < 0 {
            throw .listenFDs(SystemdError(operation: "sd_listen_fds_with_names", returnValue: count))
        }
        let descriptors = (0..<count).map { firstFileDescriptor + $0 }

        // Close-on-exec first, for every descriptor, before anything can fail.
        for fd in descriptors {
            let flags = fcntl(fd, F_GETFD)
            if flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0 {
                throw .closeOnExec(fileDescriptor: fd, SystemdError(operation: "fcntl(F_SETFD)", errno: errno))
            }
        }

        var sockets: [ListeningSocket] = []
        for (index, fd) in descriptors.enumerated() {
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            let expected = expectedFamilies[name]
            guard let family = verify(fd, expected: expected) else {
                throw .unexpectedSocket(fileDescriptor: fd, name: name, expected: expected)
            }
            sockets.append(ListeningSocket(fileDescriptor: fd, name: name, family: family))
        }
        return sockets
    }

    /// The family of `fd` if it is a listening stream socket matching `expected`
    /// (any of unix/IPv4/IPv6 when `nil`), else `nil`.
    static func verify(_ fd: Int32, expected: SocketFamily?) -> SocketFamily? {
        let stream = Int32(SOCK_STREAM.rawValue)
        let listening: Int32 = 1
        func isUnix() -> Bool { sd_is_socket_unix(fd, stream, listening, nil, 0) > 0 }
        func isIPv4() -> Bool { sd_is_socket(fd, AF_INET, stream, listening) > 0 }
        func isIPv6() -> Bool { sd_is_socket(fd, AF_INET6, stream, listening) > 0 }

        switch expected {
        case .unix: return isUnix() ? .unix : nil
        case .ipv4: return isIPv4() ? .ipv4 : nil
        case .ipv6: return isIPv6() ? .ipv6 : nil
        case .internet:
            guard sd_is_socket_inet(fd, AF_UNSPEC, stream, listening, 0) > 0 else { return nil }
            return isIPv4() ? .ipv4 : .ipv6
        case nil:
            if isUnix() { return .unix }
            if isIPv4() { return .ipv4 }
            if isIPv6() { return .ipv6 }
            return nil
        }
    }

    /// Frees a NULL-terminated `char **` allocated by libsystemd (a strv).
    private static func freeStringArray(_ array: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
        guard let array else { return }
        var index = 0
        while let string = array[index] {
            free(string)
            index += 1
        }
        free(array)
    }
}
#endif
