import Foundation
import NIOCore
import SwiftProtobuf

/// The per-connection half of `TTRPCServer`: decodes `ttrpc.Request`s, runs each call's handler in
/// its own `Task` (or, for inline handlers, right here on the event loop), and writes one
/// `ttrpc.Response` per request on the request's stream id, in whatever order the calls finish.
///
/// Threading: every method of this class runs on the connection's event loop (NIO calls the
/// `ChannelInboundHandler` methods there; handler tasks and inline responders called from other
/// threads hop back with `EventLoop.execute` before touching it). Task handlers run on Swift's
/// global concurrent executor.
///
/// Behaviour:
/// - unknown service or method: UNIMPLEMENTED;
/// - a request frame over the size limit (reported by `TTRPCFrameDecoder`): RESOURCE_EXHAUSTED,
///   and the connection stays open;
/// - a request whose payload is not a `ttrpc.Request`, or a frame with an unknown type byte: the
///   connection is closed (other connections are unaffected);
/// - an even stream id, or one already in flight: INVALID_ARGUMENT;
/// - a refused peer (see `TTRPCServer.Configuration.authorizer`): every request PERMISSION_DENIED;
/// - `timeout_nano` > 0: when it elapses the handler's task is cancelled (an inline handler's cancel
///   closure called) and DEADLINE_EXCEEDED sent;
/// - connection closed: the in-flight handler tasks are cancelled (inline: their cancel closures);
/// - `Drain` event (server shutdown): new requests get UNAVAILABLE, and the connection is closed
///   once the calls in flight have been answered.
final class TTRPCServerHandler: ChannelInboundHandler {
    typealias InboundIn = TTRPCInboundFrame
    typealias OutboundOut = TTRPCFrame

    /// Fired into the pipeline by `TTRPCServer.shutdown` to start draining this connection.
    struct Drain: Sendable {}

    private struct Call {
        let service: String
        let method: String
        /// Stops the handler's work when the call is abandoned: cancels its task, or runs what an
        /// inline handler returned.
        var cancel: (@Sendable () -> Void)?
        var timer: Scheduled<Void>?
    }

    private let registry: TTRPCServiceRegistry
    private let peer: PeerCredentials?
    /// Non-nil when the authorizer refused this peer: the message every request is answered with.
    private let refusal: String?
    private let maxPayloadLength: Int
    private let onProtocolError: (@Sendable (PeerCredentials?, any Error) -> Void)?

    private var calls: [UInt32: Call] = [:]
    private var draining = false
    private var context: ChannelHandlerContext?
    /// The most recent response write, so a draining connection closes only after it is sent.
    private var lastWrite: EventLoopFuture<Void>?

    init(
        registry: TTRPCServiceRegistry,
        peer: PeerCredentials?,
        refusal: String?,
        maxPayloadLength: Int,
        onProtocolError: (@Sendable (PeerCredentials?, any Error) -> Void)?
    ) {
        self.registry = registry
        self.peer = peer
        self.refusal = refusal
        self.maxPayloadLength = maxPayloadLength
        self.onProtocolError = onProtocolError
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelAllCalls()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelAllCalls()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Decoder errors (malformed frames) and I/O errors end this connection only.
        if error is TTRPCProtocolError { onProtocolError?(peer, error) }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is Drain {
            draining = true
            closeIfDrained()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .oversized(let header):
            guard header.type == .request else { return }
            respond(
                stream: header.streamID,
                status: Ttrpc_Status(
                    .resourceExhausted,
                    "message of \(header.payloadLength) bytes exceeds the maximum ttrpc message size of \(maxPayloadLength) bytes"
                ))
        case .frame(let frame):
            // Clients send only requests on unary calls; anything else is ignored, as ttrpc does.
            guard frame.type == .request else { return }
            handleRequest(frame, context: context)
        }
    }

    private func handleRequest(_ frame: TTRPCFrame, context: ChannelHandlerContext) {
        let stream = frame.streamID
        let request: Ttrpc_Request
        do {
            request = try Ttrpc_Request(serializedBytes: Array(frame.payload.readableBytesView))
        } catch {
            let problem = TTRPCProtocolError.undecodableEnvelope(
                streamID: stream, reason: "payload is not a ttrpc.Request (\(error))")
            onProtocolError?(peer, problem)
            context.close(promise: nil)
            return
        }

        guard stream % 2 == 1 else {
            respond(stream: stream, status: Ttrpc_Status(.invalidArgument, "stream id \(stream) is even; client streams must be odd"))
            return
        }
        guard calls[stream] == nil else {
            respond(stream: stream, status: Ttrpc_Status(.invalidArgument, "stream id \(stream) is already in use by a call in flight"))
            return
        }
        if let refusal {
            respond(stream: stream, status: Ttrpc_Status(.permissionDenied, refusal))
            return
        }
        if draining {
            respond(stream: stream, status: Ttrpc_Status(.unavailable, "ttrpc server is shutting down"))
            return
        }

        let handler: TTRPCServiceRegistry.Handler
        switch registry.lookup(service: request.service, method: request.method) {
        case .unknownService:
            respond(stream: stream, status: Ttrpc_Status(.unimplemented, "service \(request.service) is not implemented"))
            return
        case .unknownMethod:
            respond(
                stream: stream,
                status: Ttrpc_Status(.unimplemented, "method \(request.method) of service \(request.service) is not implemented"))
            return
        case .found(let found):
            handler = found
        }

        let timeout = request.timeoutNano > 0 ? request.timeoutNano : nil
        let callContext = TTRPCCallContext(
            service: request.service,
            method: request.method,
            streamID: stream,
            metadata: TTRPCMetadata(request.metadata),
            peer: peer,
            deadline: timeout.map { ContinuousClock.now.advanced(by: .nanoseconds($0)) })
        let payload = [UInt8](request.payload)
        let eventLoop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: eventLoop)

        var call = Call(service: request.service, method: request.method, cancel: nil, timer: nil)
        if let timeout {
            call.timer = eventLoop.scheduleTask(in: .nanoseconds(timeout)) {
                this.value.expire(stream: stream, after: timeout)
            }
        }
        switch handler {
        case .task(let handler):
            let task = Task {
                let result: Result<[UInt8], any Error>
                do {
                    result = .success(try await handler(callContext, payload))
                } catch {
                    result = .failure(error)
                }
                eventLoop.execute { this.value.finish(stream: stream, result: result) }
            }
            call.cancel = { task.cancel() }
            calls[stream] = call
        case .inline(let handler):
            // In the table before the handler runs: it may answer right away.
            calls[stream] = call
            let respond = TTRPCResponder { make in
                if eventLoop.inEventLoop {
                    this.value.finish(stream: stream, result: make())
                } else {
                    eventLoop.execute { this.value.finish(stream: stream, result: make()) }
                }
            }
            if let cancel = handler(callContext, payload, respond) {
                // Still waiting for its answer: keep the way to stop it.
                calls[stream]?.cancel = cancel
            }
        }
    }

    /// A handler task finished (on the event loop). Dropped if the call already timed out or the
    /// connection closed.
    private func finish(stream: UInt32, result: Result<[UInt8], any Error>) {
        guard let call = calls.removeValue(forKey: stream) else { return }
        call.timer?.cancel()
        switch result {
        case .success(let payload):
            var response = Ttrpc_Response()
            response.status = Ttrpc_Status(.ok, "")
            response.payload = Data(payload)
            send(stream: stream, response: response, service: call.service, method: call.method)
        case .failure(let error):
            let status: Ttrpc_Status =
                error is CancellationError
                ? Ttrpc_Status(.cancelled, "\(call.service)/\(call.method) was cancelled")
                : Ttrpc_Status(error: error)
            respond(stream: stream, status: status)
        }
        closeIfDrained()
    }

    /// The call's `timeout_nano` elapsed before its handler finished.
    private func expire(stream: UInt32, after nanos: Int64) {
        guard let call = calls.removeValue(forKey: stream) else { return }
        call.cancel?()
        respond(
            stream: stream,
            status: Ttrpc_Status(
                .deadlineExceeded,
                "\(call.service)/\(call.method) did not finish within its timeout of \(describeNanoseconds(nanos))"))
        closeIfDrained()
    }

    private func respond(stream: UInt32, status: Ttrpc_Status) {
        var response = Ttrpc_Response()
        response.status = status
        send(stream: stream, response: response, service: nil, method: nil)
    }

    private func send(stream: UInt32, response: Ttrpc_Response, service: String?, method: String?) {
        guard let context else { return }
        var bytes: [UInt8]
        do {
            bytes = try response.serializedBytes()
        } catch {
            bytes = (try? Ttrpc_Response.with { $0.status = Ttrpc_Status(.internal, "cannot encode response: \(error)") }
                .serializedBytes()) ?? []
        }
        if bytes.count > maxPayloadLength {
            let name = service.map { "\($0)/\(method ?? "")" } ?? "call"
            let status = Ttrpc_Status(
                .resourceExhausted,
                "\(name): response of \(bytes.count) bytes exceeds the maximum ttrpc message size of \(maxPayloadLength) bytes")
            bytes = (try? Ttrpc_Response.with { $0.status = status }.serializedBytes()) ?? []
        }
        let buffer = context.channel.allocator.buffer(bytes: bytes)
        lastWrite = context.writeAndFlush(
            wrapOutboundOut(TTRPCFrame(streamID: stream, type: .response, payload: buffer)))
    }

    private func closeIfDrained() {
        guard draining, calls.isEmpty, let context else { return }
        let channel = context.channel
        if let lastWrite {
            lastWrite.whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }

    private func cancelAllCalls() {
        let pending = calls
        calls.removeAll()
        for call in pending.values {
            call.timer?.cancel()
            call.cancel?()
        }
    }
}

@available(*, unavailable)
extension TTRPCServerHandler: Sendable {}
