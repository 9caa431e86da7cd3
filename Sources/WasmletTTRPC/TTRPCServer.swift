import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A ttrpc server on a Unix stream socket.
///
/// Start it with `bind(unixSocketPath:registry:)` (creates the socket file, replacing a stale one)
/// or `adopt(listeningSocket:registry:)` (an already-listening descriptor, e.g. from systemd socket
/// activation). Each accepted connection gets its own `TTRPCServerHandler`; calls on one connection
/// run concurrently. Stop it with `shutdown(gracePeriod:)`.
///
/// All methods may be called from any thread or task.
public final class TTRPCServer: Sendable {
    public struct Configuration: Sendable {
        /// Largest request payload accepted, and largest response payload sent (default 4 MiB).
        public var maxPayloadLength: Int
        /// Checked once per connection with the peer's SO_PEERCRED credentials, on the connection's
        /// event loop before its first request is read; keep it fast. A refused peer stays
        /// connected but every request is answered PERMISSION_DENIED. If the credentials cannot be
        /// read, the peer is refused. nil: everyone who can open the socket is served.
        public var authorizer: (@Sendable (PeerCredentials) -> Bool)?
        /// Mode for the socket file (e.g. 0o660); nil keeps the umask's.
        public var socketMode: mode_t?
        /// Group for the socket file (owner: root when we are root, else unchanged); nil keeps it.
        public var socketGroup: gid_t?
        /// Told about connections closed for protocol violations (malformed frames), with the
        /// peer's credentials. Called on the connection's event loop.
        public var onProtocolError: (@Sendable (PeerCredentials?, any Error) -> Void)?
        /// Told when accepting a connection fails (out of descriptors, most likely); the server
        /// then stops accepting for a second (SwiftNIO's AcceptBackoffHandler) rather than spin.
        /// Called on the listener's event loop.
        public var onAcceptError: (@Sendable (any Error) -> Void)?

        public init(
            maxPayloadLength: Int = TTRPCFrameHeader.defaultMaxPayloadLength,
            authorizer: (@Sendable (PeerCredentials) -> Bool)? = nil,
            socketMode: mode_t? = nil,
            onProtocolError: (@Sendable (PeerCredentials?, any Error) -> Void)? = nil
        ) {
            self.maxPayloadLength = maxPayloadLength
            self.authorizer = authorizer
            self.socketMode = socketMode
            self.onProtocolError = onProtocolError
        }
    }

    /// The socket path this server bound; nil for an adopted descriptor.
    public let socketPath: String?
    private let listener: any Channel
    private let connections: ConnectionTracker
    /// Identity (device, inode) of the socket file we created, so shutdown removes only our own.
    private let socketFileID: (dev: UInt64, ino: UInt64)?

    private init(socketPath: String?, listener: any Channel, connections: ConnectionTracker) {
        self.socketPath = socketPath
        self.listener = listener
        self.connections = connections
        if let socketPath {
            var info = stat()
            self.socketFileID =
                lstat(socketPath, &info) == 0 ? (UInt64(info.st_dev), UInt64(info.st_ino)) : nil
        } else {
            self.socketFileID = nil
        }
    }

    /// Listens on `unixSocketPath` (a path or "unix:///path"). A socket file left there by a dead
    /// server is removed first; if a live server answers there, or the path is not a socket, this
    /// throws `TTRPCError` (ALREADY_EXISTS / FAILED_PRECONDITION) naming the path.
    public static func bind(
        unixSocketPath address: String,
        registry: TTRPCServiceRegistry,
        configuration: Configuration = Configuration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> TTRPCServer {
        let path = UnixSocketPath.normalize(address)
        try UnixSocketPath.prepareForBind(path)
        // With a mode or group to set, bind at a staging name and rename into place once they
        // are set: a client that can connect at `path` never finds the umask's looser mode, and
        // a client that waits for the socket to accept knows its permissions are final.
        let restricts = configuration.socketMode != nil || configuration.socketGroup != nil
        let staging = restricts && path.utf8.count + 4 <= UnixSocketPath.maxPathBytes ? path + ".new" : path
        if staging != path { unlink(staging) }
        let connections = ConnectionTracker()
        let listener: any Channel
        do {
            listener = try await makeBootstrap(
                group: group, registry: registry, configuration: configuration, connections: connections
            ).bind(unixDomainSocketPath: staging).get()
        } catch {
            throw TTRPCError.unavailable("cannot listen on unix socket \(path): \(error)")
        }
        func fail(_ what: String) async throws -> Never {
            let reason = UnixSocketPath.describe(errno: errno)
            try? await listener.close()
            unlink(staging)
            throw TTRPCError.unavailable("cannot \(what) \(path): \(reason)")
        }
        if let mode = configuration.socketMode, chmod(staging, mode) != 0 {
            try await fail("set mode \(String(mode, radix: 8)) on")
        }
        if let gid = configuration.socketGroup, chown(staging, getuid() == 0 ? 0 : uid_t.max, gid) != 0 {
            try await fail("give group \(gid) to")
        }
        if staging != path, rename(staging, path) != 0 {
            try await fail("move the socket into place at")
        }
        return TTRPCServer(socketPath: path, listener: listener, connections: connections)
    }

    /// Serves on an already bound and listening Unix stream socket, e.g. the descriptor systemd
    /// passes for socket activation (SD_LISTEN_FDS_START = 3). The server owns the descriptor
    /// from now on and closes it at shutdown; the socket file is left alone.
    public static func adopt(
        listeningSocket descriptor: CInt,
        registry: TTRPCServiceRegistry,
        configuration: Configuration = Configuration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> TTRPCServer {
        let connections = ConnectionTracker()
        let listener: any Channel
        do {
            listener = try await makeBootstrap(
                group: group, registry: registry, configuration: configuration, connections: connections
            ).withBoundSocket(descriptor).get()
        } catch {
            throw TTRPCError.unavailable("cannot serve on inherited socket descriptor \(descriptor): \(error)")
        }
        return TTRPCServer(socketPath: nil, listener: listener, connections: connections)
    }

    private static func makeBootstrap(
        group: any EventLoopGroup,
        registry: TTRPCServiceRegistry,
        configuration: Configuration,
        connections: ConnectionTracker
    ) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelInitializer { channel in
                // This bootstrap adds no backoff of its own: out of descriptors, the listener stays
                // readable and every accept fails at once, a core spent spinning.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
                    try channel.pipeline.syncOperations.addHandler(AcceptErrorReporter(report: configuration.onAcceptError))
                }
            }
            .childChannelInitializer { channel in
                guard connections.add(channel) else {
                    // Accepted while shutting down: NIO closes a channel whose initializer fails.
                    return channel.eventLoop.makeFailedFuture(TTRPCError.unavailable("ttrpc server is shutting down"))
                }
                return PeerCredentials.read(from: channel)
                    .map { Optional($0) }
                    .recover { _ in nil }
                    .flatMapThrowing { peer in
                        let refusal = Self.refusal(for: peer, authorizer: configuration.authorizer)
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandler(
                            ByteToMessageHandler(TTRPCFrameDecoder(maxPayloadLength: configuration.maxPayloadLength)))
                        try pipeline.addHandler(MessageToByteHandler(TTRPCFrameEncoder()))
                        try pipeline.addHandler(
                            TTRPCServerHandler(
                                registry: registry,
                                peer: peer,
                                refusal: refusal,
                                maxPayloadLength: configuration.maxPayloadLength,
                                onProtocolError: configuration.onProtocolError))
                    }
            }
    }

    private static func refusal(
        for peer: PeerCredentials?, authorizer: (@Sendable (PeerCredentials) -> Bool)?
    ) -> String? {
        guard let authorizer else { return nil }
        guard let peer else {
            return "permission denied: the server could not read the peer credentials of this connection"
        }
        return authorizer(peer) ? nil : "permission denied: peer \(peer) is not allowed to use this ttrpc server"
    }

    /// Number of open client connections.
    public var connectionCount: Int { connections.count }

    /// Stops the server:
    /// 1. stops accepting connections (closes the listening socket and removes the socket file it
    ///    created, if it is still ours);
    /// 2. lets every connection finish the calls it has in flight, answering new requests
    ///    UNAVAILABLE, and closes each connection once it is idle;
    /// 3. after `gracePeriod`, closes the connections that are still busy (their handlers' tasks
    ///    are cancelled).
    /// Returns when every connection is closed. Calling it again waits for the same end.
    public func shutdown(gracePeriod: Duration = .seconds(10)) async {
        let open = connections.beginShutdown()
        try? await listener.close()
        if let socketPath, let socketFileID {
            var info = stat()
            if lstat(socketPath, &info) == 0, UInt64(info.st_dev) == socketFileID.dev,
                UInt64(info.st_ino) == socketFileID.ino
            {
                unlink(socketPath)
            }
        }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(TTRPCServerHandler.Drain())
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for channel in open { try? await channel.closeFuture.get() }
            }
            group.addTask {
                try? await Task.sleep(for: gracePeriod)
            }
            _ = await group.next()
            group.cancelAll()
            for channel in open { channel.close(promise: nil) }
        }
    }

    /// Returns once the listening socket is closed (by `shutdown` or an error).
    public func waitUntilClosed() async {
        try? await listener.closeFuture.get()
    }
}

/// The open connections of a server; touched from every event loop, hence the mutex.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var shuttingDown = false
    }

    private let state = Mutex(State())

    /// Records a new connection; false once shutdown began (the caller closes it).
    func add(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let added = state.withLock { state in
            guard !state.shuttingDown else { return false }
            state.channels[id] = channel
            return true
        }
        if added {
            channel.closeFuture.whenComplete { [self] _ in
                _ = state.withLock { $0.channels.removeValue(forKey: id) }
            }
        }
        return added
    }

    /// Marks the server as shutting down and returns the connections open now.
    func beginShutdown() -> [any Channel] {
        state.withLock { state in
            state.shuttingDown = true
            return Array(state.channels.values)
        }
    }

    var count: Int { state.withLock { $0.channels.count } }
}

/// Passes the listener's accept errors (after AcceptBackoffHandler has seen them) to the owner.
private final class AcceptErrorReporter: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    let report: (@Sendable (any Error) -> Void)?

    init(report: (@Sendable (any Error) -> Void)?) { self.report = report }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.fireChannelRead(data) }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { report?(error) }
}
