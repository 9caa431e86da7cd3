import CWasmletInterrupt
import Glibc
import NIOCore
import NIOPosix
import Synchronization

/// Keeps an HTTP event loop polling its sockets for a short window after it writes an answer,
/// rather than going to sleep in `epoll_wait` at once.
///
/// Why: a client on a keep-alive connection sends its next request a few tens of microseconds
/// after it reads an answer. A loop asleep by then pays a wake-up, which in a VM is an exit to
/// the host: measured here, a C server that blocks between requests served 6,400-7,900
/// requests/s on one connection when it spent 40 µs per request, and 11,300 when it polled for
/// 50 µs before blocking. The price is CPU: a loop spends at most `window` polling after each
/// answer when nothing follows, which `wasmlet_http_poll_seconds_total` shows.
///
/// How: NIO runs every task that is ready before it goes back to `epoll_wait`, so a task that
/// re-schedules itself would starve the sockets. Instead each loop owns a pipe, registered
/// with the loop like any channel: while the window lasts, one byte is kept in it, so the
/// loop's `epoll_wait` returns at once (with any socket that is ready beside it) and the loop
/// never sleeps. When the window ends the byte is read and not replaced, and the loop sleeps as
/// before.
public final class AnswerPolling: Sendable {
    /// The windows' totals, for the metrics.
    public struct Totals: Sendable, Equatable {
        /// Requests whose first bytes were read while their loop was polling: each is a sleep
        /// and a wake-up saved.
        public var caught: UInt64
        /// Time the loops spent in windows, counted as each ends: at most the CPU it cost.
        public var seconds: Double

        public init(caught: UInt64, seconds: Double) {
            self.caught = caught
            self.seconds = seconds
        }
    }

    private let loops: [ObjectIdentifier: LoopPoller]

    /// One poller for each of `group`'s loops; `window` zero polls never.
    public init(group: any EventLoopGroup, window: TimeAmount) {
        var loops: [ObjectIdentifier: LoopPoller] = [:]
        if window > .zero {
            for loop in group.makeIterator() {
                loops[ObjectIdentifier(loop)] = LoopPoller(eventLoop: loop, window: window)
            }
        }
        self.loops = loops
    }

    /// The poller of `loop`; nil when polling is off or `loop` is not one of the group's.
    func poller(for loop: any EventLoop) -> LoopPoller? { loops[ObjectIdentifier(loop)] }

    public var totals: Totals {
        loops.values.reduce(into: Totals(caught: 0, seconds: 0)) { sum, poller in
            sum.caught &+= poller.caught.load(ordering: .relaxed)
            sum.seconds += Double(poller.polledNanoseconds.load(ordering: .relaxed)) / 1e9
        }
    }
}

/// One event loop's window. Its state is touched only on its loop; the counters are atomics for
/// the metrics' reads.
final class LoopPoller: @unchecked Sendable {
    let eventLoop: any EventLoop
    private let window: Int64
    let caught = Atomic<UInt64>(0)
    let polledNanoseconds = Atomic<UInt64>(0)
    /// Set up on first use, on the loop (a loop that never answers keeps no pipe).
    private enum Pipe {
        case none, opening, open(any Channel), failed
    }
    private var pipe = Pipe.none
    /// Set while a byte is in the pipe.
    private var polling = false
    private var windowStart: UInt64 = 0
    private var pollUntil: UInt64 = 0

    init(eventLoop: any EventLoop, window: TimeAmount) {
        self.eventLoop = eventLoop
        self.window = window.nanoseconds
    }

    /// An answer was written on this loop: poll until `window` after it.
    func answered() {
        eventLoop.assertInEventLoop()
        let now = NIODeadline.now().uptimeNanoseconds
        pollUntil = now &+ UInt64(window)
        guard !polling else { return }
        switch pipe {
        case .open(let channel):
            polling = true
            windowStart = now
            kick(channel)
        case .none: openPipe()
        case .opening, .failed: break
        }
    }

    /// A request's first bytes were read on this loop.
    func requestArrived() {
        if polling { caught.wrappingAdd(1, ordering: .relaxed) }
    }

    /// The byte was read: put another back while the window lasts.
    fileprivate func pipeRead(_ channel: any Channel) {
        let now = NIODeadline.now().uptimeNanoseconds
        if now < pollUntil {
            // A client thread waiting for this CPU gets it first.
            sched_yield()
            kick(channel)
        } else {
            polling = false
            polledNanoseconds.wrappingAdd(now &- windowStart, ordering: .relaxed)
        }
    }

    /// The pipe closed (its loop is shutting down): poll no more.
    fileprivate func pipeClosed() {
        pipe = .failed
        polling = false
    }

    private func kick(_ channel: any Channel) {
        var byte = channel.allocator.buffer(capacity: 1)
        byte.writeInteger(UInt8(1))
        channel.writeAndFlush(byte, promise: nil)
    }

    /// Opens the pipe. Registering from its own loop completes at once in NIO today; if it ever
    /// does not, polling starts once it is registered, if the window is still open.
    private func openPipe() {
        var ends: [CInt] = [-1, -1]
        guard wasmlet_pipe_nonblocking(&ends) == 0 else {
            pipe = .failed
            return
        }
        pipe = .opening
        NIOPipeBootstrap(group: eventLoop)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PollPipeHandler(poller: self))
                }
            }
            .takingOwnershipOfDescriptors(input: ends[0], output: ends[1])
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    pipe = .open(channel)
                    // The answer that opened it is still within its window, which began
                    // at that answer.
                    if !polling, NIODeadline.now().uptimeNanoseconds < pollUntil {
                        polling = true
                        windowStart = pollUntil &- UInt64(window)
                        kick(channel)
                    }
                case .failure:
                    // NIO's bootstrap may have closed the ends on its way out, so they are
                    // not closed again here (a double close could hit a reused descriptor).
                    pipe = .failed
                }
            }
    }
}

private final class PollPipeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let poller: LoopPoller

    init(poller: LoopPoller) { self.poller = poller }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        poller.pipeRead(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        poller.pipeClosed()
        context.fireChannelInactive()
    }
}
