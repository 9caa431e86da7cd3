import Glibc
import Synchronization

/// A TCP listener to pre-open for an instance: an IP literal (IPv4, or IPv6 without brackets)
/// and a port; port 0 lets the kernel pick a free one.
public struct ListenerSpec: Sendable, Equatable, Codable {
    public var address: String
    public var port: UInt16

    public init(address: String, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// `ADDR:PORT`, with brackets around an IPv6 address.
    public var description: String { Self.format(address: address, port: port) }

    static func format(address: String, port: UInt16) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}

/// A listener as it was bound: the requested spec, the address the kernel gave it (port 0
/// resolved), and the guest descriptor number it has.
public struct BoundListener: Sendable, Equatable, Codable {
    public var requested: ListenerSpec
    /// The bound address, e.g. `127.0.0.1:41234` or `[::1]:8080`.
    public var boundAddress: String
    public var boundPort: UInt16
    /// The guest's descriptor for it (after the preopened directories).
    public var guestFd: UInt32

    public init(requested: ListenerSpec, boundAddress: String, boundPort: UInt16, guestFd: UInt32) {
        self.requested = requested
        self.boundAddress = boundAddress
        self.boundPort = boundPort
        self.guestFd = guestFd
    }
}

/// A TCP socket someone else already bound and made listening (containerd's shim, which binds
/// in the pod's network namespace and hands the descriptor to wasmletd), given to an instance
/// as a pre-opened listener.
///
/// Ownership: whoever holds it owns the descriptor until ``WasmletRuntime/create(_:)`` is
/// called with it in ``InstanceSpec/inheritedListeners``; from that call on the runtime owns
/// it, whether the create succeeds (it is closed when the instance exits, is killed or is
/// deleted) or throws (it is closed before the error is thrown). `close()` is idempotent and
/// does nothing once the runtime has adopted the descriptor, so a caller's failure path may
/// call it unconditionally. An unadopted descriptor is also closed when this is released.
///
/// Descriptors cannot survive a daemon restart, so this never enters a durable record or an
/// API message: after a restart such an instance is exited, as any other.
public final class InheritedListener: Sendable {
    private let state: Mutex<Int32?>

    /// Takes ownership of `fd`, which should be a bound, listening TCP socket (checked at create).
    public init(adopting fd: Int32) { state = Mutex(fd) }

    /// The descriptor while this still owns it.
    public var descriptor: Int32? { state.withLock { $0 } }

    /// Closes the descriptor unless it was closed or adopted already.
    public func close() {
        if let fd = take() { _ = Glibc.close(fd) }
    }

    /// Gives up the descriptor (once).
    func take() -> Int32? {
        state.withLock { current in
            defer { current = nil }
            return current
        }
    }

    deinit { close() }
}

/// A bound, listening host socket (non-blocking, close-on-exec), shared by the instance record
/// and the guest's run.
///
/// Two steps end it: `stopListening` (at exit, kill or delete) shuts it down, which on Linux
/// takes a listening socket out of the listen state at once (the port is free, new connections
/// are refused, queued ones are reset), while the descriptor number stays valid for a guest
/// thread that might still hold it; the descriptor is closed when the last reference goes, so
/// no thread can ever act on a number the process has reused.
final class ListeningSocket: @unchecked Sendable {
    let fd: Int32
    let bound: (address: String, port: UInt16)

    private init(fd: Int32, bound: (String, UInt16)) {
        self.fd = fd
        self.bound = bound
    }

    deinit { close(fd) }

    func stopListening() { _ = shutdown(fd, Int32(SHUT_RDWR)) }

    static let backlog: Int32 = 1024

    /// Adopts an inherited listener: from here on the descriptor is this socket's (closed with
    /// it, so also when this throws). It must be a listening TCP socket; it is made
    /// non-blocking and close-on-exec, as the runtime's own are. `index` names it in errors.
    /// Returns it with the address it is bound to, as a spec.
    static func adopt(_ inherited: InheritedListener, index: Int) throws(RuntimeError) -> (ListeningSocket, ListenerSpec) {
        guard let fd = inherited.take() else {
            throw RuntimeError.invalidArgument("inherited listener \(index): its descriptor was closed or used already")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var type: Int32 = 0
        var accepting: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size)
        size = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &size)
        let family = Int32(storage.ss_family)
        guard named == 0, family == AF_INET || family == AF_INET6, type == Int32(SOCK_STREAM.rawValue), accepting == 1 else {
            close(fd)
            throw RuntimeError.invalidArgument("inherited listener \(index) (fd \(fd)) is not a listening TCP socket")
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let port: UInt16 = withUnsafeMutablePointer(to: &storage) { pointer in
            if family == AF_INET {
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    _ = inet_ntop(AF_INET, &sin.pointee.sin_addr, &text, socklen_t(text.count))
                    return UInt16(bigEndian: sin.pointee.sin_port)
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                _ = inet_ntop(AF_INET6, &sin6.pointee.sin6_addr, &text, socklen_t(text.count))
                return UInt16(bigEndian: sin6.pointee.sin6_port)
            }
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let address = String(cString: text)
        return (ListeningSocket(fd: fd, bound: (ListenerSpec.format(address: address, port: port), port)),
                ListenerSpec(address: address, port: port))
    }

    /// Creates, binds and listens. Errors name the listener and the reason.
    static func open(_ spec: ListenerSpec) throws(RuntimeError) -> ListeningSocket {
        let name = spec.description
        var storage = sockaddr_storage()
        let length: socklen_t
        let family: Int32
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, spec.address, &v4) == 1 {
            family = AF_INET
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    sin.pointee.sin_family = sa_family_t(AF_INET)
                    sin.pointee.sin_port = spec.port.bigEndian
                    sin.pointee.sin_addr = v4
                }
            }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else if inet_pton(AF_INET6, spec.address, &v6) == 1 {
            family = AF_INET6
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                    sin6.pointee.sin6_port = spec.port.bigEndian
                    sin6.pointee.sin6_addr = v6
                }
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            throw RuntimeError.invalidArgument("listen \(name): \"\(spec.address)\" is not an IPv4 or IPv6 address")
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure(name, "socket", errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 { _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let bindResult = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bindResult == 0 else {
            let error = errno
            close(fd)
            throw failure(name, "bind", error)
        }
        guard listen(fd, backlog) == 0 else {
            let error = errno
            close(fd)
            throw failure(name, "listen", error)
        }
        var actual = sockaddr_storage()
        var actualLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let port: UInt16 = withUnsafeMutablePointer(to: &actual) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &actualLength) }
            if family == AF_INET {
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
        }
        return ListeningSocket(fd: fd, bound: (ListenerSpec.format(address: spec.address, port: port), port))
    }

    private static func failure(_ name: String, _ call: String, _ error: Int32) -> RuntimeError {
        let reason = String(cString: strerror(error))
        switch error {
        case EADDRINUSE:
            return RuntimeError(.failedPrecondition, "listen \(name): address already in use")
        case EACCES, EPERM:
            return RuntimeError(.permissionDenied, "listen \(name): \(call): \(reason) (the daemon may not bind this port)")
        case EADDRNOTAVAIL:
            return RuntimeError(.invalidArgument, "listen \(name): \(call): \(reason) (no local interface has this address)")
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            return RuntimeError(.resourceExhausted, "listen \(name): \(call): \(reason)")
        default:
            return RuntimeError(.invalidArgument, "listen \(name): \(call): \(reason)")
        }
    }
}
