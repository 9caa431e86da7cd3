// The listener handoff between containerd-shim-wasmlet-v1 and wasmletd.
//
// Why: under CRI a container's listeners must live in its pod's network namespace. Entering a
// namespace (setns) needs CAP_SYS_ADMIN, which the shim has (it runs as root) and wasmletd does
// not. So the shim creates, binds and listens (NetworkNamespace.swift in the shim) and passes
// the listening sockets to the daemon, before it relays the container's Create:
//
//   shim                                        wasmletd (ListenerHandoffServer)
//   connect <api socket>.listeners (SEQPACKET)
//   one message: this text + SCM_RIGHTS fds ->  checks SO_PEERCRED like the API socket, checks
//                                               each fd is a listening TCP socket, keeps them
//                                               under (namespace, id) for a while
//                                          <-   "ok" or "error <why>"
//   relays Create                               Create claims them (closes them if it fails)
//
// The daemon's ttrpc server is NIO-based and cannot take SCM_RIGHTS, hence a socket of its own.
//
// Text format, one `key=value` per line after the first line; values never hold a newline:
//   wasmlet-listeners/1
//   namespace=<containerd namespace>
//   id=<container id>
//   annotation=<the wasmlet.dev/listen value the sockets were made for>
//   bound=<ADDR:PORT of descriptor 1>
//   bound=<ADDR:PORT of descriptor 2> ...
// The reply is `ok` or `error <message>`.

#if canImport(Glibc)
import Glibc
#endif

public struct ListenerHandoffMessage: Sendable, Equatable {
    public static let magic = "wasmlet-listeners/1"
    /// Messages are small; anything longer is refused.
    public static let maxBytes = 16 * 1024

    public var namespace: String
    public var id: String
    /// The annotation value the sockets were bound for: the daemon checks it against the
    /// container's spec, so the list is parsed in one place only (the shim).
    public var annotation: String
    /// The bound address of each descriptor, in order.
    public var bound: [String]

    public init(namespace: String, id: String, annotation: String, bound: [String]) {
        self.namespace = namespace
        self.id = id
        self.annotation = annotation
        self.bound = bound
    }

    public struct FormatError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    public func encoded() throws(FormatError) -> [UInt8] {
        for value in [namespace, id, annotation] + bound where value.contains("\n") || value.contains("\0") {
            throw FormatError(description: "a value holds a newline or NUL")
        }
        guard !namespace.isEmpty, !id.isEmpty else { throw FormatError(description: "namespace and id must be set") }
        var text = "\(Self.magic)\nnamespace=\(namespace)\nid=\(id)\nannotation=\(annotation)\n"
        for address in bound { text += "bound=\(address)\n" }
        let bytes = Array(text.utf8)
        guard bytes.count <= Self.maxBytes else { throw FormatError(description: "message too long") }
        return bytes
    }

    public init(decoding bytes: [UInt8]) throws(FormatError) {
        guard bytes.count <= Self.maxBytes else { throw FormatError(description: "message too long") }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == Substring(Self.magic) else {
            throw FormatError(description: "not a \(Self.magic) message")
        }
        var namespace: String?
        var id: String?
        var annotation: String?
        var bound: [String] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let equals = line.firstIndex(of: "=") else { throw FormatError(description: "malformed line \"\(line)\"") }
            let key = line[..<equals]
            let value = String(line[line.index(after: equals)...])
            switch key {
            case "namespace": namespace = value
            case "id": id = value
            case "annotation": annotation = value
            case "bound": bound.append(value)
            default: break  // newer fields are ignored
            }
        }
        guard let namespace, !namespace.isEmpty, let id, !id.isEmpty else {
            throw FormatError(description: "namespace or id missing")
        }
        self.init(namespace: namespace, id: id, annotation: annotation ?? "", bound: bound)
    }

    /// Where the daemon takes handoffs: beside its API socket.
    public static func socketPath(forAPISocket path: String) -> String { path + ".listeners" }
}

/// The daemon's answer to a handoff.
public enum ListenerHandoffReply: Sendable, Equatable {
    case ok
    case error(String)

    public var encoded: [UInt8] {
        switch self {
        case .ok: Array("ok".utf8)
        case .error(let message): Array("error \(message)".utf8)
        }
    }

    public init(decoding bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        if text == "ok" {
            self = .ok
        } else if text.hasPrefix("error ") {
            self = .error(String(text.dropFirst("error ".count)))
        } else {
            self = .error(text.isEmpty ? "wasmletd closed the handoff connection without an answer" : "unexpected answer \"\(text)\"")
        }
    }
}

/// Facts about a socket descriptor, from the kernel.
public enum SocketFacts {
    /// True when `fd` is a TCP (stream, IPv4 or IPv6) socket in the listening state.
    public static func isListeningTCP(_ fd: Int32) -> Bool {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard let domain = option(SO_DOMAIN), domain == AF_INET || domain == AF_INET6,
            option(SO_TYPE) == Int32(SOCK_STREAM.rawValue), option(SO_ACCEPTCONN) == 1
        else { return false }
        return true
    }

    /// The local address, `ADDR:PORT` (`[ADDR]:PORT` for IPv6); nil if not an internet socket.
    public static func localAddress(_ fd: Int32) -> String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard got == 0 else { return nil }
        return format(storage)
    }

    private static func decode(_ text: [CChar]) -> String {
        String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `ADDR:PORT` of an IPv4 or IPv6 socket address.
    public static func format(_ storage: sockaddr_storage) -> String? {
        var storage = storage
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    var ip = address.pointee.sin_addr
                    guard inet_ntop(AF_INET, &ip, &text, socklen_t(text.count)) != nil else { return nil }
                    return "\(decode(text)):\(UInt16(bigEndian: address.pointee.sin_port))"
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    var ip = address.pointee.sin6_addr
                    guard inet_ntop(AF_INET6, &ip, &text, socklen_t(text.count)) != nil else { return nil }
                    return "[\(decode(text))]:\(UInt16(bigEndian: address.pointee.sin6_port))"
                }
            }
        default:
            return nil
        }
    }
}

/// SOCK_SEQPACKET Unix sockets for the handoff: one message per send, peer credentials.
public enum HandoffSocket {
    private static func address(_ path: String) -> sockaddr_un? {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= 107 else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (offset, byte) in bytes.enumerated() { raw[offset] = byte }
            raw[bytes.count] = 0
        }
        return address
    }

    private static func newSocket() -> Int32 {
        socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    /// A blocking connection to `path`; send and receive time out after `timeoutMilliseconds`.
    public static func connect(path: String, timeoutMilliseconds: Int) -> Result<Int32, HandoffSystemError> {
        guard var address = address(path) else { return .failure(HandoffSystemError("connect \(path)", ENAMETOOLONG)) }
        let fd = newSocket()
        guard fd >= 0 else { return .failure(HandoffSystemError("socket")) }
        setTimeouts(fd, milliseconds: timeoutMilliseconds)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let error = HandoffSystemError("connect \(path)")
            close(fd)
            return .failure(error)
        }
        return .success(fd)
    }

    /// A listening socket at `path` (an old socket file there is replaced) with `mode`.
    public static func listen(path: String, mode: mode_t, group: gid_t? = nil) -> Result<Int32, HandoffSystemError> {
        guard var address = address(path) else { return .failure(HandoffSystemError("bind \(path)", ENAMETOOLONG)) }
        var info = stat()
        if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let fd = newSocket()
        guard fd >= 0 else { return .failure(HandoffSystemError("socket")) }
        // Created with no permissions, opened up once owner and group are right.
        let previous = umask(0o777)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        umask(previous)
        guard bound == 0 else {
            let error = HandoffSystemError("bind \(path)")
            close(fd)
            return .failure(error)
        }
        if let group { _ = chown(path, getuid(), group) }
        guard chmod(path, mode) == 0, Glibc.listen(fd, 64) == 0 else {
            let error = HandoffSystemError("listen \(path)")
            close(fd)
            unlink(path)
            return .failure(error)
        }
        return .success(fd)
    }

    public static func setTimeouts(_ fd: Int32, milliseconds: Int) {
        var value = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The client side of one handoff: sends the message with the descriptors and waits for
    /// the daemon's answer. The caller keeps (and closes) its own copies of the descriptors.
    public static func handOff(
        _ message: ListenerHandoffMessage, descriptors: [Int32], to path: String, timeoutMilliseconds: Int = 5000
    ) -> ListenerHandoffReply {
        let bytes: [UInt8]
        do {
            bytes = try message.encoded()
        } catch {
            return .error("cannot encode the handoff: \(error)")
        }
        let fd: Int32
        switch connect(path: path, timeoutMilliseconds: timeoutMilliseconds) {
        case .success(let connected): fd = connected
        case .failure(let error): return .error("cannot reach wasmletd's listener handoff socket: \(error)")
        }
        defer { close(fd) }
        let sendError = FDPassing.send(socket: fd, payload: bytes, descriptors: descriptors)
        // A refusing daemon answers and closes without reading: its answer is still readable.
        switch FDPassing.receive(socket: fd, maxPayload: 4096, maxDescriptors: 0) {
        case .success(let received) where sendError != nil && received.payload.isEmpty:
            return .error("cannot hand the listeners to wasmletd: \(sendError!)")
        case .success(let received):
            for extra in received.descriptors { close(extra) }
            return ListenerHandoffReply(decoding: received.payload)
        case .failure(let error):
            if let sendError { return .error("cannot hand the listeners to wasmletd: \(sendError)") }
            return .error("no answer from wasmletd's listener handoff socket: \(error)")
        }
    }
}
