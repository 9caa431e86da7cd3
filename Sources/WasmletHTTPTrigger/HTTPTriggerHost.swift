import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import WasmletRuntime

/// The daemon's HTTP trigger: serves HTTP/1.1 on every running service's listeners, on one
/// event loop group shared by all services (an idle service costs its sockets and a few
/// objects, no thread).
public final class HTTPTriggerHost: ServingHost {
    private let group: any EventLoopGroup
    private let logger: Logger
    private let observer: (any HTTPTriggerObserver)?
    private let serverSoftware: String
    private let sessions = Mutex<[InstanceKey: HTTPServiceSession]>([:])
    private let polling: AnswerPolling

    /// `pollWindow`: how long a loop polls its sockets after an answer before it sleeps
    /// (`AnswerPolling`); zero never.
    public init(
        group: any EventLoopGroup, serverSoftware: String, logger: Logger, observer: (any HTTPTriggerObserver)? = nil,
        pollWindow: TimeAmount = .zero
    ) {
        self.group = group
        self.polling = AnswerPolling(group: group, window: pollWindow)
        self.serverSoftware = serverSoftware
        self.logger = logger
        self.observer = observer
    }

    public func startServing(_ instance: ServedInstance) throws -> any ServingSession {
        let service = HTTPService(instance: instance, serverSoftware: serverSoftware, logger: logger, observer: observer)
        let session = HTTPServiceSession(service: service) { [weak self] key in
            _ = self?.sessions.withLock { $0.removeValue(forKey: key) }
        }
        for (index, fd) in instance.listenerDescriptors.enumerated() {
            let bound = instance.listeners.indices.contains(index) ? instance.listeners[index] : nil
            let channel = ServerBootstrap(group: group)
                // Out of descriptors, stop accepting for a second rather than spin on the listener.
                .serverChannelInitializer { [logger] server in
                    server.eventLoop.makeCompletedFuture {
                        try server.pipeline.syncOperations.addHandler(AcceptErrorLog(logger: logger, service: "\(instance.key)"))
                        try server.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
                    }
                }
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { [polling] channel in
                    guard session.connectionOpened(channel) else { return channel.close() }
                    let poller = polling.poller(for: channel.eventLoop)
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                            withPipeliningAssistance: true, withErrorHandling: false,
                            // CGIResponse checks the guest's headers; the rest are ours.
                            withOutboundHeaderValidation: false)
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionHandler(service: service, poller: poller))
                    }
                }
                .withBoundSocket(fd)
            session.add(listener: channel)
            let logger = logger
            channel.whenFailure { error in
                logger.error(
                    "the HTTP trigger cannot serve a listener", metadata: ["instance": "\(instance.key)", "listener": "\(bound.map { "\($0.boundAddress):\($0.boundPort)" } ?? "?")", "error": "\(error)"])
            }
        }
        sessions.withLock { $0[instance.key] = session }
        logger.info(
            "serving HTTP", metadata: ["instance": "\(instance.key)", "listeners": "\(instance.listeners.map { "\($0.boundAddress):\($0.boundPort)" })"])
        return session
    }

    /// How the loops' polling after answers went, node-wide.
    public var pollingTotals: AnswerPolling.Totals { polling.totals }

    /// A running service's numbers (the runtime's snapshots carry them too).
    public func statistics(of key: InstanceKey) -> ServingStatistics? { sessions.withLock { $0[key] }?.statistics }
}

struct HTTPTriggerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One service's listeners and connections, so that its kill closes them all.
final class HTTPServiceSession: ServingSession {
    let service: HTTPService
    private struct State {
        var listeners: [EventLoopFuture<any Channel>] = []
        var connections: [ObjectIdentifier: any Channel] = [:]
    }
    private let state = Mutex(State())
    private let removed: @Sendable (InstanceKey) -> Void

    init(service: HTTPService, removed: @escaping @Sendable (InstanceKey) -> Void) {
        self.service = service
        self.removed = removed
    }

    var statistics: ServingStatistics {
        let counts = service.counts
        return ServingStatistics(requests: service.requestCount, running: counts.running, queued: counts.queued)
    }

    func add(listener: EventLoopFuture<any Channel>) { state.withLock { $0.listeners.append(listener) } }

    func connectionOpened(_ channel: any Channel) -> Bool {
        guard service.connectionOpened() else { return false }
        let id = ObjectIdentifier(channel)
        state.withLock { $0.connections[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            service.connectionClosed()
            _ = state.withLock { $0.connections.removeValue(forKey: id) }
        }
        return true
    }

    func stop() {
        service.stop()
        let (listeners, connections) = state.withLock { state in
            defer {
                state.listeners = []
                state.connections = [:]
            }
            return (state.listeners, Array(state.connections.values))
        }
        for listener in listeners { listener.whenSuccess { $0.close(promise: nil) } }
        for connection in connections { connection.close(promise: nil) }
        removed(service.key)
    }
}

/// Logs a listener's accept failures (out of descriptors, say) before `AcceptBackoffHandler`
/// pauses accepting for a second: one line per failure, so at most one a second while they last.
private final class AcceptErrorLog: ChannelInboundHandler {
    typealias InboundIn = any Channel
    private let logger: Logger
    private let service: String

    init(logger: Logger, service: String) {
        self.logger = logger
        self.service = service
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.warning(
            "the HTTP trigger cannot accept a connection; retrying in 1 s", metadata: ["instance": "\(service)", "error": "\(error)"])
        context.fireErrorCaught(error)
    }
}
