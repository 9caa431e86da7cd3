import NIOCore
import NIOHTTP1
import NIOPosix

/// The observability endpoint, HTTP/1.1 on SwiftNIO:
/// - `GET /metrics`: the Prometheus text format (0.0.4);
/// - `GET /healthz`: 200 while `healthy()` (the scheduler makes progress), else 503;
/// - `GET /readyz`: 200 while `notReadyReason()` is nil (state recovered, accepting work), else
///   503 with the reason as a one-line body ("recovering state").
/// Other paths answer 404, other methods 405, malformed requests 400 (NIO's protocol error
/// handler), request heads over `maxHeaderBytes` 431, bodies 413. A bad request only ever
/// costs its own connection.
public final class MetricsServer: Sendable {
    public struct Endpoints: Sendable {
        public var metrics: @Sendable () -> [UInt8]
        public var healthy: @Sendable () -> Bool
        /// nil while ready; otherwise why not, one line (the body of `/readyz`'s 503).
        public var notReadyReason: @Sendable () -> String?

        /// `/readyz` answers 503 "not ready" while `ready()` is false.
        public init(
            metrics: @escaping @Sendable () -> [UInt8], healthy: @escaping @Sendable () -> Bool,
            ready: @escaping @Sendable () -> Bool
        ) {
            self.init(metrics: metrics, healthy: healthy, notReadyReason: { ready() ? nil : "not ready" })
        }

        /// `/readyz` answers 503 with the reason while `notReadyReason()` gives one.
        public init(
            metrics: @escaping @Sendable () -> [UInt8], healthy: @escaping @Sendable () -> Bool,
            notReadyReason: @escaping @Sendable () -> String?
        ) {
            self.metrics = metrics
            self.healthy = healthy
            self.notReadyReason = notReadyReason
        }
    }

    public static let maxHeaderBytes = 8 * 1024

    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    /// The address actually bound (the port when 0 was asked for).
    public var localAddress: SocketAddress? { channel.localAddress }

    /// Binds `host:port` ("127.0.0.1:9464", "[::1]:9464").
    public static func bind(
        address: String, endpoints: Endpoints, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> MetricsServer {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw MetricsServerError.badAddress(address)
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "127.0.0.1" }
        let channel = try await bootstrap(endpoints, group: group).bind(host: host, port: port).get()
        return MetricsServer(channel: channel)
    }

    /// Serves on an inherited listening socket (socket activation, fd named "metrics").
    public static func adopt(
        listeningSocket fd: CInt, endpoints: Endpoints, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> MetricsServer {
        let channel = try await bootstrap(endpoints, group: group).withBoundSocket(fd).get()
        return MetricsServer(channel: channel)
    }

    public func shutdown() async {
        try? await channel.close()
    }

    private static func bootstrap(_ endpoints: Endpoints, group: any EventLoopGroup) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Out of descriptors, stop accepting for a second rather than spin on the listener.
            .serverChannelInitializer { server in server.eventLoop.makeCompletedFuture { try server.pipeline.syncOperations.addHandler(AcceptBackoffHandler()) } }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: .seconds(30)))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(MetricsHTTPHandler(endpoints: endpoints))
                }
            }
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
    }
}

public enum MetricsServerError: Error, CustomStringConvertible {
    case badAddress(String)
    public var description: String {
        switch self {
        case .badAddress(let address): "metrics address \"\(address)\" is not HOST:PORT"
        }
    }
}

final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: MetricsServer.Endpoints
    private var head: HTTPRequestHead?
    private var rejectBody = false

    init(endpoints: MetricsServer.Endpoints) { self.endpoints = endpoints }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            rejectBody = false
        case .body:
            rejectBody = true
        case .end:
            guard let head else { return }
            self.head = nil
            respond(context: context, to: head)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
        let headerBytes = head.uri.utf8.count + head.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        if headerBytes > MetricsServer.maxHeaderBytes {
            return send(context, head, .requestHeaderFieldsTooLarge, "request header fields too large\n", close: true)
        }
        if rejectBody {
            return send(context, head, .payloadTooLarge, "request bodies are not accepted\n", close: true)
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let known = ["/metrics", "/healthz", "/readyz"]
        guard known.contains(path) else {
            return send(context, head, .notFound, "not found\n")
        }
        guard head.method == .GET || head.method == .HEAD else {
            return send(context, head, .methodNotAllowed, "method not allowed\n", extra: [("Allow", "GET, HEAD")])
        }
        switch path {
        case "/metrics":
            let body = endpoints.metrics()
            send(context, head, .ok, body, contentType: "text/plain; version=0.0.4; charset=utf-8")
        case "/healthz":
            endpoints.healthy()
                ? send(context, head, .ok, "ok\n") : send(context, head, .serviceUnavailable, "scheduler is not making progress\n")
        default:
            if let reason = endpoints.notReadyReason() {
                let line = reason.split(whereSeparator: \.isNewline).joined(separator: " ")
                send(context, head, .serviceUnavailable, line + "\n")
            } else {
                send(context, head, .ok, "ready\n")
            }
        }
    }

    private func send(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ text: String,
        extra: [(String, String)] = [], close: Bool = false
    ) {
        send(context, head, status, Array(text.utf8), contentType: "text/plain; charset=utf-8", extra: extra, close: close)
    }

    private func send(
        _ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: [UInt8],
        contentType: String, extra: [(String, String)] = [], close: Bool = false
    ) {
        let keepAlive = request.isKeepAlive && !close
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.count)")])
        for (name, value) in extra { headers.add(name: name, value: value) }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
