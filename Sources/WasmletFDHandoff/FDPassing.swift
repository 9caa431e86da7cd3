// OS glue for handing file descriptors between processes: sendmsg/recvmsg with SCM_RIGHTS
// over a connected Unix socket, and the peer's credentials (SO_PEERCRED). Standard library
// and Glibc only, so the shim (which links nothing else) and wasmletd share one implementation.
//
// Used by the listener handoff (ListenerHandoffMessage.swift): the shim, which may enter a
// pod's network namespace, creates listening sockets there and passes them to wasmletd, which
// may not (it runs without CAP_SYS_ADMIN).

#if canImport(Glibc)
import Glibc
#endif

/// An errno with its strerror text.
public struct HandoffSystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public let call: String

    public init(_ call: String, _ code: Int32 = errno) {
        self.call = call
        self.code = code
    }

    public var description: String {
        let text = strerror(code).map { String(cString: $0) } ?? "error \(code)"
        return "\(call): \(text)"
    }
}

public enum FDPassing {
    /// The most descriptors one message may carry (the kernel's own limit is 253).
    public static let maxDescriptors = 64

    // cmsg layout, as the CMSG_* macros compute it (they are not visible from Swift).
    private static func align(_ length: Int) -> Int {
        let word = MemoryLayout<Int>.size
        return (length + word - 1) & ~(word - 1)
    }
    private static var headerSpace: Int { align(MemoryLayout<cmsghdr>.size) }
    static func controlSpace(descriptors: Int) -> Int {
        headerSpace + align(descriptors * MemoryLayout<Int32>.size)
    }

    /// Sends `payload` (at least one byte) with `descriptors` attached, as one message. The
    /// descriptors stay open here: the receiver gets its own copies.
    public static func send(
        socket: Int32, payload: [UInt8], descriptors: [Int32]
    ) -> HandoffSystemError? {
        precondition(!payload.isEmpty, "a message carrying descriptors needs at least one byte")
        guard descriptors.count <= maxDescriptors else { return HandoffSystemError("sendmsg", E2BIG) }
        var payload = payload
        var control = [UInt8](repeating: 0, count: descriptors.isEmpty ? 0 : controlSpace(descriptors: descriptors.count))
        return payload.withUnsafeMutableBytes { payloadBytes -> HandoffSystemError? in
            control.withUnsafeMutableBytes { controlBytes -> HandoffSystemError? in
                var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer -> HandoffSystemError? in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    if !descriptors.isEmpty {
                        let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                        header.pointee.cmsg_len = headerSpace + descriptors.count * MemoryLayout<Int32>.size
                        header.pointee.cmsg_level = SOL_SOCKET
                        header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                        let data = (controlBytes.baseAddress! + headerSpace).assumingMemoryBound(to: Int32.self)
                        for (index, fd) in descriptors.enumerated() { data[index] = fd }
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                    }
                    while true {
                        let sent = sendmsg(socket, &message, Int32(MSG_NOSIGNAL))
                        if sent < 0 && errno == EINTR { continue }
                        if sent < 0 { return HandoffSystemError("sendmsg") }
                        // SOCK_SEQPACKET sends a message whole or not at all.
                        return sent == payloadBytes.count ? nil : HandoffSystemError("sendmsg", EMSGSIZE)
                    }
                }
            }
        }
    }

    public struct Received: Sendable {
        /// The message's bytes (empty: the peer closed the connection).
        public var payload: [UInt8]
        /// The descriptors that came with it, now owned by the caller (close-on-exec).
        public var descriptors: [Int32]
        /// The payload or the descriptors did not fit (MSG_TRUNC / MSG_CTRUNC). What did arrive
        /// is still in `descriptors` and must be closed.
        public var truncated: Bool
    }

    /// Receives one message of at most `maxPayload` bytes with at most `maxDescriptors`
    /// descriptors (received close-on-exec). Blocks unless the socket is non-blocking.
    public static func receive(
        socket: Int32, maxPayload: Int, maxDescriptors: Int = FDPassing.maxDescriptors
    ) -> Result<Received, HandoffSystemError> {
        var payload = [UInt8](repeating: 0, count: max(1, maxPayload))
        var control = [UInt8](repeating: 0, count: controlSpace(descriptors: maxDescriptors))
        return payload.withUnsafeMutableBytes { payloadBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer -> Result<Received, HandoffSystemError> in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    var count: Int
                    repeat {
                        count = recvmsg(socket, &message, Int32(MSG_CMSG_CLOEXEC))
                    } while count < 0 && errno == EINTR
                    guard count >= 0 else { return .failure(HandoffSystemError("recvmsg")) }
                    var descriptors: [Int32] = []
                    var offset = 0
                    let controlLength = Int(message.msg_controllen)
                    while offset + headerSpace <= controlLength {
                        let header = (controlBytes.baseAddress! + offset).assumingMemoryBound(to: cmsghdr.self).pointee
                        let length = Int(header.cmsg_len)
                        guard length >= headerSpace, offset + length <= controlLength else { break }
                        if header.cmsg_level == SOL_SOCKET && header.cmsg_type == Int32(SCM_RIGHTS) {
                            let number = (length - headerSpace) / MemoryLayout<Int32>.size
                            let data = (controlBytes.baseAddress! + offset + headerSpace).assumingMemoryBound(to: Int32.self)
                            for index in 0..<number { descriptors.append(data[index]) }
                        }
                        offset += align(length)
                    }
                    let truncated = message.msg_flags & Int32(MSG_TRUNC) != 0 || message.msg_flags & Int32(MSG_CTRUNC) != 0
                    return .success(
                        Received(
                            payload: Array(payloadBytes.prefix(count)), descriptors: descriptors, truncated: truncated))
                }
            }
        }
    }

    /// The peer of a connected Unix socket: pid, uid, gid as the kernel recorded them at connect.
    public static func peerCredentials(_ socket: Int32) -> (pid: Int32, uid: UInt32, gid: UInt32)? {
        var credentials = PeerCredentialsLayout()
        var length = socklen_t(MemoryLayout<PeerCredentialsLayout>.size)
        guard getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return nil }
        return (credentials.pid, credentials.uid, credentials.gid)
    }

    /// Linux's `struct ucred` (which Swift's Glibc module does not export).
    private struct PeerCredentialsLayout {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// A connected pair of SOCK_SEQPACKET Unix sockets (close-on-exec), for tests and in-process use.
    public static func socketPair() -> (Int32, Int32)? {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            return nil
        }
        return (fds[0], fds[1])
    }
}
