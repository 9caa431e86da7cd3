import Foundation
import Synchronization
import Testing
import WasmletRuntime
import WasmletTestSupport

@testable import WasmletStore

/// A `WriterClock` that only moves when the test says so. The writer parks on it like on the
/// real one; `advance` wakes whoever waits for a deadline it has reached.
final class ManualWriterClock: WriterClock, @unchecked Sendable {
    private let base = ContinuousClock.now
    /// Test side: guards the fields below, and is broadcast when a waiter arrives.
    private let state = NSCondition()
    private var offset: Duration = .zero
    private var waiters: [Int: (condition: MonotonicCondition, deadline: ContinuousClock.Instant)] = [:]
    private var nextToken = 0

    var now: ContinuousClock.Instant { state.withLock { base + offset } }

    func wait(_ condition: MonotonicCondition, until deadline: ContinuousClock.Instant) -> Bool {
        // The caller holds `condition` from here until `wait()` releases it, so an `advance`
        // that finds this waiter cannot broadcast before the wait has begun.
        let token = state.withLock {
            nextToken += 1
            waiters[nextToken] = (condition, deadline)
            state.broadcast()
            return nextToken
        }
        defer { _ = state.withLock { waiters.removeValue(forKey: token) } }
        if now >= deadline { return false }
        condition.wait()
        return now < deadline
    }

    func advance(by duration: Duration) {
        let parked = state.withLock {
            offset += duration
            return waiters.values.map(\.condition)
        }
        for condition in parked {
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Blocks until someone waits for exactly `deadline`; false if nobody does within `guard`
    /// of real time (a hang guard: the state arrives in microseconds when the code is right).
    func waitForWaiter(until deadline: ContinuousClock.Instant, guard limit: TimeInterval = 30) -> Bool {
        let giveUp = Date(timeIntervalSinceNow: limit)
        return state.withLock {
            while !waiters.values.contains(where: { $0.deadline == deadline }) {
                if !state.wait(until: giveUp) { return false }
            }
            return true
        }
    }
}

/// The journal writer measures its delays on a monotonic clock it is given, never on the wall
/// clock. It used to wait with `NSCondition.wait(until: Date)`, so a backward step of the
/// system clock held background records (the runtime's exit records among them) back for as
/// long as the step.
@Suite struct WriterClockTests {
    /// A background write (an exit record nobody waits for) waits `backgroundDelay` for company
    /// on the writer's clock, and commits as soon as that clock has moved on by as much, not
    /// earlier and whatever the wall clock does. With the old wall-clock waits the writer never
    /// parks on the injected clock (and commits after 10 ms of wall time, or never while the
    /// wall clock stands behind its deadline), so this test fails on them.
    @Test func backgroundWriteCommitsWhenTheWritersClockPassesItsDelay() async throws {
        let directory = try TemporaryDirectory()
        let clock = ManualWriterClock()
        let store = try InstanceStore(stateDirectory: directory.path + "/state", clock: clock)
        _ = try store.recover()
        let record = InstanceStoreTests.record("exit-1", state: .exited, exitCode: 3)
        let start = clock.now
        let committed = Mutex<(done: Bool, error: (any Error)?)>((false, nil))
        let done = DispatchSemaphore(value: 0)
        store.persist(record, waitForNewer: false, background: true) { error in
            committed.withLock { $0 = (true, error) }
            done.signal()
        }

        // The writer parks until `start + backgroundDelay` on the injected clock...
        #expect(clock.waitForWaiter(until: start + JournalWriter.backgroundDelay))
        // ...and nothing else can wake it into committing: the record is not durable yet.
        #expect(!committed.withLock { $0.done })
        #expect(!store.hasPersistedExit(record.key, serial: record.serial))

        // Short of the delay, it stays parked (a spurious wake re-checks the clock).
        clock.advance(by: JournalWriter.backgroundDelay / 2)
        #expect(!store.hasPersistedExit(record.key, serial: record.serial))

        clock.advance(by: JournalWriter.backgroundDelay / 2)
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                done.wait()
                continuation.resume()
            }
        }
        #expect(committed.withLock { $0.error } == nil)
        #expect(store.hasPersistedExit(record.key, serial: record.serial))
    }
}
