import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Who is on the other end of a Unix socket connection, as the kernel reports it (SO_PEERCRED):
/// the process id, user id and group id of the peer at the time it connected.
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// The credentials of this process.
    public static var current: PeerCredentials {
        PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
    }

    public var description: String { "pid \(pid) uid \(uid) gid \(gid)" }

    /// Reads the peer credentials of a connected Unix-socket channel with
    /// `getsockopt(SOL_SOCKET, SO_PEERCRED)`. Callable from any thread; the future completes on
    /// the channel's event loop. Fails where SO_PEERCRED does not exist (non-Linux) or when the
    /// channel is not a socket channel.
    public static func read(from channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        #if os(Linux)
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(
                TTRPCError(.unavailable, "peer credentials: \(type(of: channel)) is not a socket channel"))
        }
        let future: EventLoopFuture<LinuxUcred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.map { PeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
        #else
        return channel.eventLoop.makeFailedFuture(
            TTRPCError(.unimplemented, "peer credentials: SO_PEERCRED is only available on Linux"))
        #endif
    }
}

#if os(Linux)
/// Layout of Linux's `struct ucred` (which Swift's Glibc module does not export).
struct LinuxUcred: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
#endif
