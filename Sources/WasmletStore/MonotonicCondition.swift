import Glibc

/// A mutex and condition variable whose timed waits run on `CLOCK_MONOTONIC`.
///
/// Why not `NSCondition.wait(until: Date)`: its deadline is a wall-clock time, and the wait ends
/// when the wall clock reaches it. A backward step of the clock (NTP, an operator, a VM resumed)
/// makes a 10 ms wait last as long as the step, and the journal writer holds durable records
/// back for that long.
package final class MonotonicCondition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    func signal() { pthread_cond_signal(condition) }
    func broadcast() { pthread_cond_broadcast(condition) }

    /// Waits (locked) until signalled, or spuriously woken.
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits (locked) until signalled or `timeout` has passed on the monotonic clock; false when
    /// it passed.
    func wait(timeout: Duration) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let (seconds, attoseconds) = max(timeout, .zero).components
        let nanoseconds = Int(deadline.tv_nsec) + Int(attoseconds / 1_000_000_000)
        deadline.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        return pthread_cond_timedwait(condition, mutex, &deadline) != ETIMEDOUT
    }
}

/// The clock the journal writer reads its delays from and waits on. Production uses
/// `MonotonicWriterClock`; tests inject one they advance themselves.
package protocol WriterClock: Sendable {
    var now: ContinuousClock.Instant { get }
    /// Waits on `condition`, which the caller holds, until it is signalled or this clock reaches
    /// `deadline`; false when the deadline was reached.
    func wait(_ condition: MonotonicCondition, until deadline: ContinuousClock.Instant) -> Bool
}

/// Monotonic time: `ContinuousClock` for instants, `CLOCK_MONOTONIC` for the waits.
package struct MonotonicWriterClock: WriterClock {
    package init() {}

    package var now: ContinuousClock.Instant { .now }

    package func wait(_ condition: MonotonicCondition, until deadline: ContinuousClock.Instant) -> Bool {
        let remaining = deadline - .now
        guard remaining > .zero else { return false }
        return condition.wait(timeout: remaining)
    }
}
