import Glibc

/// The group-commit queue in front of `JournalWriter`'s thread: callers `submit` operations, and
/// the writer `take`s everything queued since its last round as one batch, so concurrent callers
/// share one flush. Background operations (nobody waits for them) wait up to `backgroundDelay`
/// for company; while idle with record files to write, the writer first gives new work
/// `idleDelay` to arrive. Every wait is on the injected (monotonic) clock.
final class GroupCommitQueue: @unchecked Sendable {
    typealias Operation = JournalWriter.Operation

    /// How long background operations may wait for company.
    static let backgroundDelay: Duration = .milliseconds(10)
    /// How long the writer must have had nothing to do before it writes record files anyway.
    static let idleDelay: Duration = .milliseconds(20)

    private let clock: any WriterClock

    // Under `queue`.
    private let queue = MonotonicCondition()
    private var pending: [Operation] = []
    private var sleeping = false
    /// An operation someone waits for is queued.
    private var urgent = false
    /// When the oldest queued background operation was queued.
    private var backgroundSince: ContinuousClock.Instant?

    init(clock: any WriterClock) {
        self.clock = clock
    }

    /// Queues an operation for the next batch. A `background` one (nobody waits for it: the
    /// runtime's events, Start's record) does not start a batch of its own at once: it goes with
    /// the next operation someone waits for, or after `backgroundDelay`.
    func submit(_ operation: Operation, background: Bool = false) {
        queue.lock()
        pending.append(operation)
        var wake = sleeping
        if background {
            if backgroundSince == nil {
                backgroundSince = clock.now
            } else {
                wake = false  // already timed
            }
        } else {
            urgent = true
        }
        queue.unlock()
        if wake { queue.signal() }
    }

    /// Someone now waits for an operation queued in the background: write it soon.
    func hurry() {
        queue.lock()
        let wake = sleeping && !pending.isEmpty && !urgent
        if !pending.isEmpty { urgent = true }
        queue.unlock()
        if wake { queue.signal() }
    }

    /// Nothing is queued (the writer stops writing record files while idle once something is).
    func isEmpty() -> Bool {
        queue.lock()
        defer { queue.unlock() }
        return pending.isEmpty
    }

    /// Waits until a batch is due and swaps it into `batch` (true), or, when `filesToWrite` and
    /// nothing arrived for `idleDelay`, returns false: time to write record files.
    func take(into batch: inout [Operation], filesToWrite: Bool) -> Bool {
        queue.lock()
        var writeFiles = false
        while !urgent {
            if let since = backgroundSince {
                let due = since + Self.backgroundDelay
                if clock.now >= due { break }
                sleeping = true
                _ = clock.wait(queue, until: due)
                sleeping = false
            } else if filesToWrite {
                // Idle with record files to write: first give new work `idleDelay` to arrive,
                // so a client's next request does not wait behind file writes.
                sleeping = true
                let woken = clock.wait(queue, until: clock.now + Self.idleDelay)
                sleeping = false
                if !woken, pending.isEmpty {
                    writeFiles = true
                    break
                }
            } else {
                sleeping = true
                queue.wait()
                sleeping = false
            }
        }
        if writeFiles {
            queue.unlock()
            return false
        }
        swap(&batch, &pending)
        urgent = false
        backgroundSince = nil
        queue.unlock()
        return true
    }
}
