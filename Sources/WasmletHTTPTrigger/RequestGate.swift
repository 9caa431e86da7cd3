import NIOCore
import Synchronization

/// A service's concurrency limit and its queue: at most `maxConcurrency` requests run at once,
/// at most `queueLength` wait, first come first served, each for at most its queue time.
/// Callable from any thread.
///
/// The queue times share one scheduled task per gate, set for the oldest waiter: all of a
/// gate's waiters wait equally long, so they expire in queue order. A task per queued request
/// put one timer per request on the event loop (40,000 at 8,000 requests/s with a 5 s queue
/// time), each firing later to find its request long answered.
final class RequestGate: Sendable {
    enum Entry {
        /// Run now; call `leave()` when done.
        case granted
        /// Waiting; `grant` will be called when a slot is free, or `expire` when its queue
        /// time is over, unless `cancel(token)` comes first.
        case queued(token: UInt64)
        /// Over the concurrency and the queue.
        case full
    }

    fileprivate struct Waiter {
        let token: UInt64
        let grant: @Sendable () -> Void
        let expire: @Sendable () -> Void
        let expiresAt: NIODeadline
    }

    fileprivate struct State {
        var running = 0
        var queue: [Waiter] = []
        var queueHead = 0
        var nextToken: UInt64 = 0
        /// The expiry task is scheduled (for the head of the queue, or earlier).
        var expiryScheduled = false
        var queued: Int { queue.count - queueHead }
    }

    let maxConcurrency: Int
    let queueLength: Int
    private let state = Mutex(State())

    init(maxConcurrency: Int, queueLength: Int) {
        self.maxConcurrency = maxConcurrency
        self.queueLength = queueLength
    }

    /// `eventLoop` times the queue when this request is the one that starts the expiry task.
    func enter(
        grant: @escaping @Sendable () -> Void, expire: @escaping @Sendable () -> Void, within queueTime: TimeAmount,
        on eventLoop: any EventLoop
    ) -> Entry {
        let (entry, schedule) = state.withLock { state -> (Entry, NIODeadline?) in
            if state.running < maxConcurrency && state.queued == 0 {
                state.running += 1
                return (.granted, nil)
            }
            guard state.queued < queueLength else { return (.full, nil) }
            state.nextToken += 1
            let expiresAt = NIODeadline.now() + queueTime
            state.queue.append(Waiter(token: state.nextToken, grant: grant, expire: expire, expiresAt: expiresAt))
            guard !state.expiryScheduled else { return (.queued(token: state.nextToken), nil) }
            state.expiryScheduled = true
            return (.queued(token: state.nextToken), expiresAt)
        }
        if let schedule { scheduleExpiry(at: schedule, on: eventLoop) }
        return entry
    }

    private func scheduleExpiry(at deadline: NIODeadline, on eventLoop: any EventLoop) {
        eventLoop.scheduleTask(deadline: deadline) { [self] in expireDue(on: eventLoop) }
    }

    /// Answers the waiters whose queue time is over, and schedules itself for the next one.
    private func expireDue(on eventLoop: any EventLoop) {
        let now = NIODeadline.now()
        let (expired, next) = state.withLock { state -> ([Waiter], NIODeadline?) in
            var expired: [Waiter] = []
            while state.queued > 0, state.queue[state.queueHead].expiresAt <= now {
                expired.append(state.queue[state.queueHead])
                state.queueHead += 1
            }
            state.compact()
            guard state.queued > 0 else {
                state.expiryScheduled = false
                return (expired, nil)
            }
            return (expired, state.queue[state.queueHead].expiresAt)
        }
        if let next { scheduleExpiry(at: next, on: eventLoop) }
        for waiter in expired { waiter.expire() }
    }

    /// A granted request finished: its slot goes to the first waiter, if any.
    func leave() {
        let next = state.withLock { state -> Waiter? in
            guard state.queued > 0 else {
                state.running -= 1
                return nil
            }
            let waiter = state.queue[state.queueHead]
            state.queueHead += 1
            state.compact()
            return waiter
        }
        next?.grant()
    }

    /// Takes a queued request out (its client left). False when it was granted or expired
    /// already, and then its grant or its expiry runs or has run.
    func cancel(_ token: UInt64) -> Bool {
        state.withLock { state in
            guard let index = state.queue[state.queueHead...].firstIndex(where: { $0.token == token }) else { return false }
            state.queue.remove(at: index)
            return true
        }
    }

    var counts: (running: Int, queued: Int) { state.withLock { ($0.running, $0.queued) } }
}

extension RequestGate.State {
    /// Drops the served head of the queue once it is half the array.
    fileprivate mutating func compact() {
        if queueHead > 64 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
    }
}
