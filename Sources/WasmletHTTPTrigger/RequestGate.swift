import Synchronization

/// A service's concurrency limit and its queue: at most `maxConcurrency` requests run at once,
/// at most `queueLength` wait, first come first served. Callable from any thread.
final class RequestGate: Sendable {
    enum Entry {
        /// Run now; call `leave()` when done.
        case granted
        /// Waiting; `grant` will be called when a slot is free, unless `cancel(token)` wins.
        case queued(token: UInt64)
        /// Over the concurrency and the queue.
        case full
    }

    fileprivate struct Waiter {
        let token: UInt64
        let grant: @Sendable () -> Void
    }

    fileprivate struct State {
        var running = 0
        var queue: [Waiter] = []
        var queueHead = 0
        var nextToken: UInt64 = 0
        var queued: Int { queue.count - queueHead }
    }

    let maxConcurrency: Int
    let queueLength: Int
    private let state = Mutex(State())

    init(maxConcurrency: Int, queueLength: Int) {
        self.maxConcurrency = maxConcurrency
        self.queueLength = queueLength
    }

    func enter(grant: @escaping @Sendable () -> Void) -> Entry {
        state.withLock { state in
            if state.running < maxConcurrency && state.queued == 0 {
                state.running += 1
                return .granted
            }
            guard state.queued < queueLength else { return .full }
            state.nextToken += 1
            state.queue.append(Waiter(token: state.nextToken, grant: grant))
            return .queued(token: state.nextToken)
        }
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

    /// Takes a queued request out (its queue time ran out, or its client left). False when it
    /// was granted already, and then its grant runs or has run.
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
