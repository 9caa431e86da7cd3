import Foundation
import NIOCore
import SwiftProtobuf

/// One call handed from `TTRPCClient.call` to the connection's `TTRPCClientHandler`.
struct TTRPCOutboundCall: Sendable {
    /// Client-local id, used to cancel the call before its stream id is known to the caller.
    let callID: UInt64
    let service: String
    let method: String
    let payload: [UInt8]
    let timeoutNanos: Int64?
    let metadata: TTRPCMetadata
    let promise: EventLoopPromise<[UInt8]>
}

/// The connection half of `TTRPCClient`: assigns stream ids (odd, increasing: 1, 3, 5, ...),
/// writes request frames, and completes each call's promise when the response with its stream id
/// arrives, in whatever order responses come.
///
/// Threading: every method runs on the connection's event loop; `TTRPCClient` reaches it through
/// `NIOLoopBound` and `EventLoop.execute`. Each call's promise is completed exactly once: by its
/// response, by its timeout (DEADLINE_EXCEEDED), by cancellation (CANCELLED), or when the
/// connection ends (UNAVAILABLE).
final class TTRPCClientHandler: ChannelInboundHandler {
    typealias InboundIn = TTRPCInboundFrame
    typealias OutboundOut = TTRPCFrame

    private struct Pending {
        let callID: UInt64
        let service: String
        let method: String
        let promise: EventLoopPromise<[UInt8]>
        var timer: Scheduled<Void>?
    }

    private let path: String
    private let maxPayloadLength: Int
    private var context: ChannelHandlerContext?
    private var nextStreamID: UInt32 = 1
    private var pending: [UInt32: Pending] = [:]
    private var streamOfCall: [UInt64: UInt32] = [:]
    /// Set once the connection is unusable; new calls fail with it.
    private var closedReason: String?
    /// What made the connection fail, to explain it to the calls it fails.
    private var failure: String?

    init(path: String, maxPayloadLength: Int) {
        self.path = path
        self.maxPayloadLength = maxPayloadLength
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        connectionEnded()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionEnded()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = "\(error)" }
        context.close(promise: nil)
    }

    // MARK: calls from TTRPCClient

    func start(_ call: TTRPCOutboundCall) {
        guard let context, context.channel.isActive, closedReason == nil else {
            call.promise.fail(
                TTRPCError.unavailable(
                    "\(call.service)/\(call.method): \(closedReason ?? "connection to ttrpc server at \(path) is closed")"))
            return
        }
        var request = Ttrpc_Request()
        request.service = call.service
        request.method = call.method
        request.payload = Data(call.payload)
        request.timeoutNano = call.timeoutNanos ?? 0
        request.metadata = call.metadata.keyValues
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            call.promise.fail(TTRPCError.internal("\(call.service)/\(call.method): cannot encode ttrpc.Request: \(error)"))
            return
        }
        guard bytes.count <= maxPayloadLength else {
            call.promise.fail(
                TTRPCError.resourceExhausted(
                    "\(call.service)/\(call.method): request of \(bytes.count) bytes exceeds the maximum ttrpc message size of \(maxPayloadLength) bytes"
                ))
            return
        }
        guard nextStreamID < UInt32.max - 1 else {
            call.promise.fail(
                TTRPCError.unavailable("\(call.service)/\(call.method): stream ids of this connection are used up; reconnect"))
            return
        }
        let stream = nextStreamID
        nextStreamID += 2

        var entry = Pending(callID: call.callID, service: call.service, method: call.method, promise: call.promise)
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        let path = self.path
        if let timeout = call.timeoutNanos {
            entry.timer = context.eventLoop.scheduleTask(in: .nanoseconds(timeout)) {
                this.value.fail(
                    stream: stream,
                    TTRPCError.deadlineExceeded(
                        "\(call.service)/\(call.method): no response from \(path) within \(describeNanoseconds(timeout))"))
            }
        }
        pending[stream] = entry
        streamOfCall[call.callID] = stream

        let frame = TTRPCFrame(streamID: stream, type: .request, payload: context.channel.allocator.buffer(bytes: bytes))
        context.writeAndFlush(wrapOutboundOut(frame)).whenFailure { error in
            this.value.fail(
                stream: stream,
                TTRPCError.unavailable("\(call.service)/\(call.method): cannot send the request to \(path): \(error)"))
        }
    }

    /// The caller's task was cancelled.
    func cancel(callID: UInt64) {
        guard let stream = streamOfCall[callID], let entry = pending[stream] else { return }
        fail(stream: stream, TTRPCError.cancelled("\(entry.service)/\(entry.method): cancelled by the caller"))
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .oversized(let header):
            guard header.type == .response, let entry = pending[header.streamID] else { return }
            fail(
                stream: header.streamID,
                TTRPCError.resourceExhausted(
                    "\(entry.service)/\(entry.method): response of \(header.payloadLength) bytes exceeds the maximum ttrpc message size of \(maxPayloadLength) bytes"
                ))
        case .frame(let frame):
            guard frame.type == .response else { return }
            let response: Ttrpc_Response
            do {
                response = try Ttrpc_Response(serializedBytes: Array(frame.payload.readableBytesView))
            } catch {
                failure = "malformed response on stream \(frame.streamID) (\(error))"
                context.close(promise: nil)
                return
            }
            guard let entry = remove(stream: frame.streamID) else { return }  // late: timed out or cancelled
            if response.hasStatus, response.status.code != TTRPCStatusCode.ok.rawValue {
                entry.promise.fail(
                    TTRPCError(TTRPCStatusCode(rawValue: response.status.code), response.status.message))
            } else {
                entry.promise.succeed([UInt8](response.payload))
            }
        }
    }

    // MARK: helpers

    private func remove(stream: UInt32) -> Pending? {
        guard let entry = pending.removeValue(forKey: stream) else { return nil }
        streamOfCall.removeValue(forKey: entry.callID)
        entry.timer?.cancel()
        return entry
    }

    private func fail(stream: UInt32, _ error: TTRPCError) {
        remove(stream: stream)?.promise.fail(error)
    }

    private func connectionEnded() {
        if closedReason == nil {
            closedReason =
                "connection to ttrpc server at \(path) closed" + (failure.map { " (\($0))" } ?? "")
        }
        let reason = closedReason!
        let streams = Array(pending.keys)
        for stream in streams {
            guard let entry = pending[stream] else { continue }
            fail(stream: stream, TTRPCError.unavailable("\(entry.service)/\(entry.method): \(reason) before the call was answered"))
        }
    }
}

@available(*, unavailable)
extension TTRPCClientHandler: Sendable {}
