// OS glue: create listening TCP sockets inside a network namespace.
//
// setns(CLONE_NEWNET) changes the namespace of the calling thread only, and a socket stays in
// the namespace it was created in for its whole life, wherever its descriptor goes. So the
// shim starts a thread of its own, enters the namespace there, creates, binds and listens,
// and lets that thread end: it never has to find its way back, and the shim's serving thread
// never leaves the host namespace. The descriptors are then handed to wasmletd (which lacks
// CAP_SYS_ADMIN and so cannot enter the namespace itself) over SCM_RIGHTS; see
// Sources/WasmletFDHandoff/ListenerHandoffMessage.swift.

#if canImport(Glibc)
import Glibc
import WasmletConventions
#endif

/// The work a namespace thread runs (passed through pthread_create's context pointer).
private final class NamespaceJob {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

public enum NetworkNamespace {
    /// CLONE_NEWNET (sched.h; not visible from Swift).
    static let cloneNewNet: Int32 = 0x4000_0000

    /// glibc's setns, which Swift's Glibc module does not export (it is behind _GNU_SOURCE).
    private typealias SetnsFunction = @convention(c) (Int32, Int32) -> Int32
    private static let setnsFunction: SetnsFunction? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { return nil }
        return unsafeBitCast(symbol, to: SetnsFunction.self)
    }()

    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// (device, inode) of a namespace file: two paths name the same namespace iff these match.
    public static func identity(ofNamespaceAt path: String) -> (UInt64, UInt64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// The namespace the calling thread is in.
    public static var currentIdentity: (UInt64, UInt64)? { identity(ofNamespaceAt: "/proc/thread-self/ns/net") }

    /// Runs `body` on a new thread that has entered the network namespace at `path`, and waits
    /// for it. The thread ends after `body`, so no thread of this process stays in the namespace.
    public static func run<T>(inNamespaceAt path: String, _ body: @escaping () -> T) -> Result<T, Failure> {
        guard let setns = setnsFunction else { return .failure(Failure(description: "setns is not available")) }
        let namespaceFD = open(path, O_RDONLY | O_CLOEXEC)
        guard namespaceFD >= 0 else {
            return .failure(Failure(description: "cannot open the network namespace \(path): \(SystemError.last)"))
        }
        defer { close(namespaceFD) }
        var result: T?
        var failure: Failure?
        let job = NamespaceJob {
            if setns(namespaceFD, cloneNewNet) != 0 {
                failure = Failure(description: "cannot enter the network namespace \(path): \(SystemError.last)")
                return
            }
            result = body()
        }
        let context = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(
            &thread, nil,
            { raw in
                let job = Unmanaged<NamespaceJob>.fromOpaque(raw!).takeRetainedValue()
                job.body()
                return nil
            }, context)
        guard created == 0 else {
            Unmanaged<NamespaceJob>.fromOpaque(context).release()
            return .failure(Failure(description: "cannot start a thread: \(SystemError(created))"))
        }
        pthread_join(thread, nil)
        if let failure { return .failure(failure) }
        return .success(result!)
    }

    /// Creates a listening TCP socket for each address, in the namespace at `path` (nil: the
    /// shim's own, the host's). All or nothing: on any failure every socket made so far is
    /// closed and the error names the address and the reason. `where` words the namespace for
    /// the error ("the pod's network namespace (/var/run/netns/cni-...)").
    public static func listen(
        _ addresses: [ListenAddress], inNamespaceAt path: String?, describedAs place: String, backlog: Int32 = 1024
    ) -> Result<[Int32], Failure> {
        let bindAll = { () -> Result<[Int32], Failure> in
            var made: [Int32] = []
            for address in addresses {
                switch listenOne(address, backlog: backlog) {
                case .success(let fd):
                    made.append(fd)
                case .failure(let error):
                    for fd in made { close(fd) }
                    return .failure(Failure(description: "cannot listen on \(address) in \(place): \(error)"))
                }
            }
            return .success(made)
        }
        guard let path else { return bindAll() }
        switch run(inNamespaceAt: path, bindAll) {
        case .success(let result): return result
        case .failure(let failure): return .failure(failure)
        }
    }

    /// socket, bind, listen for one address in the calling thread's namespace. The socket is
    /// blocking and close-on-exec, with SO_REUSEADDR (a restarted server can rebind while old
    /// connections linger in TIME_WAIT; a port someone listens on still fails EADDRINUSE) and,
    /// for IPv6, IPV6_V6ONLY (so `[::]:P` and `0.0.0.0:P` can both be asked for).
    static func listenOne(_ address: ListenAddress, backlog: Int32) -> Result<Int32, SystemError> {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        var storage = sockaddr_storage()
        let length: Int
        if address.isIPv6 {
            var ip = sockaddr_in6()
            ip.sin6_family = sa_family_t(AF_INET6)
            ip.sin6_port = address.port.bigEndian
            guard inet_pton(AF_INET6, address.address, &ip.sin6_addr) == 1 else { return .failure(SystemError(EINVAL)) }
            withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: ip) { raw.copyMemory(from: $0) } }
            length = MemoryLayout<sockaddr_in6>.size
        } else {
            var ip = sockaddr_in()
            ip.sin_family = sa_family_t(AF_INET)
            ip.sin_port = address.port.bigEndian
            guard inet_pton(AF_INET, address.address, &ip.sin_addr) == 1 else { return .failure(SystemError(EINVAL)) }
            withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: ip) { raw.copyMemory(from: $0) } }
            length = MemoryLayout<sockaddr_in>.size
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(.last) }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        if address.isIPv6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let error = SystemError.last
            close(fd)
            return .failure(error)
        }
        return .success(fd)
    }
}
