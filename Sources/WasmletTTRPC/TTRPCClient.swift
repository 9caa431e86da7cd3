import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization

/// A ttrpc client over one Unix socket connection.
///
/// Many calls may be in flight at once on the connection, from any number of tasks; each gets its
/// own stream id and its response is matched by that id. Every failure is thrown as `TTRPCError`:
/// a non-OK status from the server keeps its code; if the connection drops, every pending call
/// fails with UNAVAILABLE; a timeout gives DEADLINE_EXCEEDED; cancelling the calling task gives
/// CANCELLED. The client does not reconnect: once `isConnected` is false, make a new one.
///
/// All methods may be called from any thread or task.
public final class TTRPCClient: Sendable {
    /// The socket path connected to.
    public let socketPath: String
    private let channel: any Channel
    /// The event loop the connection lives on. A caller that runs its tasks there (a task
    /// executor over this loop) saves two thread wake-ups per call.
    public var eventLoop: any EventLoop { channel.eventLoop }
    private let handler: NIOLoopBound<TTRPCClientHandler>
    private let nextCallID = Atomic<UInt64>(0)

    private init(socketPath: String, channel: any Channel, handler: NIOLoopBound<TTRPCClientHandler>) {
        self.socketPath = socketPath
        self.channel = channel
        self.handler = handler
    }

    /// A client dropped without `close()` still closes its connection.
    deinit {
        channel.close(promise: nil)
    }

    /// Connects to the ttrpc server at `unixSocketPath` (a path or "unix:///path").
    /// Throws `TTRPCError` UNAVAILABLE naming the path when nothing listens there.
    public static func connect(
        unixSocketPath address: String,
        maxPayloadLength: Int = TTRPCFrameHeader.defaultMaxPayloadLength,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> TTRPCClient {
        let path = UnixSocketPath.normalize(address)
        try UnixSocketPath.validate(path)
        let bootstrap = ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let pipeline = channel.pipeline.syncOperations
                try pipeline.addHandler(ByteToMessageHandler(TTRPCFrameDecoder(maxPayloadLength: maxPayloadLength)))
                try pipeline.addHandler(MessageToByteHandler(TTRPCFrameEncoder()))
                try pipeline.addHandler(TTRPCClientHandler(path: path, maxPayloadLength: maxPayloadLength))
            }
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
        } catch {
            throw TTRPCError.unavailable(connectFailure(path: path, error: error))
        }
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(
                try channel.pipeline.syncOperations.handler(type: TTRPCClientHandler.self),
                eventLoop: channel.eventLoop)
        }.get()
        return TTRPCClient(socketPath: path, channel: channel, handler: handler)
    }

    private static func connectFailure(path: String, error: any Error) -> String {
        var code: Int32?
        if let io = error as? IOError {
            code = io.errnoCode
        } else if let connection = error as? NIOConnectionError,
            let io = connection.connectionErrors.first?.error as? IOError
        {
            code = io.errnoCode
        }
        switch code {
        case ENOENT?:
            return "cannot connect to ttrpc server at \(path): no such socket (is the server running?)"
        case ECONNREFUSED?:
            return "cannot connect to ttrpc server at \(path): connection refused (stale socket, no server listening)"
        case EACCES?, EPERM?:
            return "cannot connect to ttrpc server at \(path): permission denied"
        case let errno?:
            return "cannot connect to ttrpc server at \(path): \(UnixSocketPath.describe(errno: errno))"
        case nil:
            return "cannot connect to ttrpc server at \(path): \(error)"
        }
    }

    /// Makes one unary call and returns the response payload (the serialized response message).
    ///
    /// - Parameters:
    ///   - service: fully qualified service name, e.g. "containerd.task.v2.Task".
    ///   - method: bare method name, e.g. "Create".
    ///   - payload: the serialized request message.
    ///   - timeout: sent to the server as `timeout_nano` and enforced here too; nil for none.
    ///   - metadata: request metadata, e.g. `[TTRPCMetadata.containerdNamespaceKey: "default"]`.
    public func call(
        service: String,
        method: String,
        payload: [UInt8],
        timeout: Duration? = nil,
        metadata: TTRPCMetadata = [:]
    ) async throws -> [UInt8] {
        let callID = nextCallID.add(1, ordering: .relaxed).newValue
        let eventLoop = channel.eventLoop
        let promise = eventLoop.makePromise(of: [UInt8].self)
        let call = TTRPCOutboundCall(
            callID: callID, service: service, method: method, payload: payload,
            timeoutNanos: timeout.map { max(1, $0.clampedNanoseconds) }, metadata: metadata, promise: promise)
        let handler = self.handler
        eventLoop.execute { handler.value.start(call) }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            eventLoop.execute { handler.value.cancel(callID: callID) }
        }
    }

    /// Makes one unary call with SwiftProtobuf messages. A response that does not decode as
    /// `Response` throws INTERNAL.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request,
        responseType: Response.Type = Response.self,
        timeout: Duration? = nil,
        metadata: TTRPCMetadata = [:]
    ) async throws -> Response {
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            throw TTRPCError.invalidArgument("\(service)/\(method): cannot serialize \(Request.protoMessageName): \(error)")
        }
        let reply = try await call(service: service, method: method, payload: bytes, timeout: timeout, metadata: metadata)
        do {
            return try Response(serializedBytes: reply)
        } catch {
            throw TTRPCError.internal(
                "\(service)/\(method): response is not a valid \(Response.protoMessageName): \(error)")
        }
    }

    /// False once the connection has closed (either side).
    public var isConnected: Bool { channel.isActive }

    /// Closes the connection; pending calls fail with UNAVAILABLE.
    public func close() async {
        try? await channel.close()
    }

    /// Returns once the connection is closed.
    public func waitUntilClosed() async {
        try? await channel.closeFuture.get()
    }
}
