import NIOCore
import NIOHTTP1

/// One client connection of a service: reads each request whole (within the body and header
/// limits), hands it to the service, and writes the answers in order. Behind NIO's
/// `HTTPServerPipelineHandler`, which holds a pipelined request back until the answer before it
/// is written.
///
/// A connection must deliver each whole request within `requestReadTimeoutMilliseconds` of
/// its first byte, or of the answer before it: a slow or idle client is closed, and since a
/// guest runs only once a request is complete, a slow client never holds one.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: HTTPService
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    /// An error was answered in the middle of a request: what is left of it is read and dropped
    /// (closing with unread bytes would reset the connection, and the client could lose the
    /// answer), and the connection closes at its end; the read timer bounds how long that takes.
    private var refusing = false
    /// When the request being read must be complete; nil while one is being answered. The one
    /// scheduled check per connection (`readTimer`) stays set across requests and, when it
    /// fires early, sets itself again for this: a cancel and a new timer per request cost the
    /// event loop more than the rest of the request did.
    private var readDeadline: NIODeadline?
    private var readTimer: Scheduled<Void>?
    private var inFlight: HTTPService.InFlight?
    private var answering = false
    /// Set while `service.respond` runs: an answer that comes back before it returns (the
    /// request ran on this loop) is kept here and written at once, not in a later task. A later
    /// task would let the read that follows see a request still answered, and NIO would take
    /// the socket out of epoll and put it back: two syscalls per request. The flush still waits
    /// for a task (`flushSoon`).
    private var respondingNow = false
    private var answeredNow: HTTPAnswer?
    /// Set while an answer's end is written. Writing it hands us the next pipelined request
    /// that NIO held back, from inside that write: such a request is answered in a task, or a
    /// client's held-back requests would nest one answer's stack inside another's.
    private var writingEnd = false
    private var flushScheduled = false
    /// The peer, read once: formatting it cost every request an inet_ntop and a sprintf.
    private var peer: (address: String, localPort: Int)?

    private let poller: LoopPoller?

    init(service: HTTPService, poller: LoopPoller? = nil) {
        self.service = service
        self.poller = poller
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { armReadTimer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        armReadTimer(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        readTimer?.cancel()
        readTimer = nil
        readDeadline = nil
        inFlight?.cancel()
        inFlight = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if refusing {
            if case .end = part { context.close(promise: nil) }
            return
        }
        switch part {
        case .head(let head):
            poller?.requestArrived()
            let limits = service.trigger
            if Self.headBytes(head) > Int(limits.maxHeaderBytes) {
                refuse(.headersTooLarge(limits.maxHeaderBytes), context: context, version: head.version)
                return
            }
            if let length = head.headers.first(name: "content-length").flatMap(UInt64.init), length > limits.maxBodyBytes {
                refuse(.bodyTooLarge(limits.maxBodyBytes), context: context, version: head.version)
                return
            }
            if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            self.head = head
            body.clear()
        case .body(var chunk):
            guard let head else { return }
            if UInt64(body.readableBytes + chunk.readableBytes) > service.trigger.maxBodyBytes {
                refuse(.bodyTooLarge(service.trigger.maxBodyBytes), context: context, version: head.version)
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            self.head = nil
            readDeadline = nil
            dispatch(head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError, !answering, !refusing else {
            context.close(promise: nil)
            return
        }
        let failure: HTTPFailure =
            parserError == .headerOverflow ? .headersTooLarge(service.trigger.maxHeaderBytes) : .malformedRequest("\(parserError)")
        // The decoder cannot go on after an error: close as soon as the answer is out.
        refuse(failure, context: context, version: .http1_1, closeAfterWrite: true)
    }

    /// The request line and headers as they were sent, near enough: each header costs its name,
    /// its value and four bytes of ": " and CRLF.
    static func headBytes(_ head: HTTPRequestHead) -> Int {
        head.headers.reduce(head.method.rawValue.utf8.count + head.uri.utf8.count + 12) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }

    /// What the guest is told of a request (its route is set once one matches).
    static func request(_ head: HTTPRequestHead, bodyLength: Int, remoteAddress: String, localPort: Int) -> CGIRequest {
        CGIRequest(
            method: head.method.rawValue, target: head.uri,
            protocolVersion: "HTTP/\(head.version.major).\(head.version.minor)",
            headers: head.headers.map { ($0.name, $0.value) }, bodyLength: bodyLength,
            remoteAddress: remoteAddress, localPort: localPort, route: .everything)
    }

    private func dispatch(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let peer = self.peer ?? (context.channel.remoteAddress?.ipAddress ?? "", context.channel.localAddress?.port ?? 0)
        self.peer = peer
        var request = Self.request(head, bodyLength: body.readableBytes, remoteAddress: peer.address, localPort: peer.localPort)
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        body.clear()
        let keepAlive = head.isKeepAlive
        let isHead = head.method == .HEAD
        let version = head.version
        guard let route = HTTPRoute.first(in: service.routes, matching: request.path) else {
            let failure = HTTPFailure.noRoute(String(request.path))
            service.report { $0.requestAnswered(service: service.label, status: failure.status, seconds: 0, failure: failure.reason) }
            write(HTTPAnswer(failure), context: context, version: version, keepAlive: keepAlive, omitBody: isHead)
            return
        }
        request.route = route
        let started = NIODeadline.now()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let deliver: @Sendable (HTTPAnswer, _ flushSoon: Bool) -> Void = { answer, flushSoon in
            let (handler, context) = loopBound.value
            handler.inFlight = nil
            handler.answering = false
            let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            handler.service.report {
                $0.requestAnswered(service: handler.service.label, status: answer.status, seconds: seconds, failure: answer.failure?.reason)
            }
            handler.write(answer, context: context, version: version, keepAlive: keepAlive, omitBody: isHead, flushSoon: flushSoon)
        }
        answering = true
        respondingNow = !writingEnd
        let flight = service.respond(to: request, body: bytes, eventLoop: eventLoop) { answer in
            if eventLoop.inEventLoop, loopBound.value.0.respondingNow {
                loopBound.value.0.answeredNow = answer
            } else {
                eventLoop.execute { deliver(answer, false) }
            }
        }
        respondingNow = false
        if let answer = answeredNow {
            answeredNow = nil
            deliver(answer, true)
        } else {
            inFlight = flight
        }
    }

    private func refuse(_ failure: HTTPFailure, context: ChannelHandlerContext, version: HTTPVersion, closeAfterWrite: Bool = false) {
        refusing = true
        head = nil
        body.clear()
        readDeadline = nil
        service.report { $0.requestAnswered(service: service.label, status: failure.status, seconds: 0, failure: failure.reason) }
        write(HTTPAnswer(failure), context: context, version: version, keepAlive: false, omitBody: false, closeAfterWrite: closeAfterWrite)
        armReadTimer(context)
    }

    /// `flushSoon`: flush in a task rather than now. A loop runs its tasks after every read of
    /// its turn, so the answers to many connections go out together, and a client thread is
    /// woken once for several of them: flushing each at once cost a quarter of the requests/s
    /// at 64 connections (`wrk -t2 -c64`, 24-28k against 32-42k).
    private func write(
        _ answer: HTTPAnswer, context: ChannelHandlerContext, version: HTTPVersion, keepAlive: Bool, omitBody: Bool,
        closeAfterWrite: Bool = true, flushSoon: Bool = false
    ) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders()
        headers.reserveCapacity(answer.headers.count + 2)
        for header in answer.headers { headers.add(name: header.name, value: header.value) }
        // An answer never carries framing headers (CGIResponse drops a guest's), so these are
        // the only ones.
        headers.add(name: "Content-Length", value: String(answer.body.count))
        let close = !keepAlive || refusing || service.isStopped
        if close { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: answer.status, reasonPhrase: answer.reason ?? "")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if !omitBody && !answer.body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: answer.body.count)
            buffer.writeBytes(answer.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        writingEnd = true
        if close && closeAfterWrite {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.write(wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
        } else {
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
        }
        writingEnd = false
        if flushSoon { scheduleFlush(context) } else { context.flush() }
        if !close {
            armReadTimer(context)
            // The client's next request may be a few tens of microseconds away.
            poller?.answered()
        }
    }

    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushScheduled = false
            context.flush()
        }
    }

    private func armReadTimer(_ context: ChannelHandlerContext) {
        let deadline = NIODeadline.now() + .milliseconds(Int64(min(service.trigger.requestReadTimeoutMilliseconds, 1 << 40)))
        readDeadline = deadline
        if readTimer == nil { scheduleReadCheck(context, at: deadline) }
    }

    private func scheduleReadCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        readTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.readTimer = nil
            guard let deadline = handler.readDeadline else { return }
            if deadline <= .now() {
                context.close(promise: nil)
            } else {
                handler.scheduleReadCheck(context, at: deadline)
            }
        }
    }
}
