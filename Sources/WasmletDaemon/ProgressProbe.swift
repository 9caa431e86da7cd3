import NIOCore
import NIOPosix
import Synchronization
import WasmletRuntime

/// The watchdog's health probe: "did the daemon get real work done since the last tick?"
///
/// A timer that pings unconditionally proves nothing. Instead each tick launches a heartbeat
/// that has to pass through the parts that serve clients and must not wedge:
/// 1. the Swift concurrency pool (API handlers run there) — the heartbeat is a task;
/// 2. every NIO event loop (accepts, reads, writes) — it hops onto each one;
/// 3. the runtime's state lock (every create/start/exit takes it) — it reads the statistics;
/// 4. the runtime's lifecycle queue (the serial queue that delivers every event — exit records,
///    exit metrics — and runs deadline timers and kill escalations) — it queues a no-op there
///    and waits for it to run.
/// The next tick answers `true` only if that heartbeat completed. A wedged pool, event loop,
/// runtime lock or lifecycle queue leaves the heartbeat unfinished, the pings stop, and systemd
/// restarts us.
///
/// The probe itself never blocks: it only reads and swaps a small state under a mutex.
final class ProgressProbe: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var completed: UInt64 = 0
    }

    private let state = Mutex(State())
    private let lastVerdict = Atomic<Bool>(true)
    private let runtime: WasmletRuntime
    private let group: any EventLoopGroup
    private let pool: (any TaskExecutor)?

    /// `group` and `pool` are the event loops and the executor the heartbeat must pass through:
    /// the shared NIO loops and the global concurrency pool in the daemon. A test passes its own,
    /// since in a test process hundreds of other tests keep the shared ones busy.
    init(
        runtime: WasmletRuntime, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        pool: (any TaskExecutor)? = nil
    ) {
        self.runtime = runtime
        self.group = group
        self.pool = pool
    }

    /// Called once per watchdog tick (on the watchdog's queue).
    func isMakingProgress() -> Bool {
        let (healthy, generation) = state.withLock { state -> (Bool, UInt64?) in
            // The first tick has nothing to judge yet; after that, the previous heartbeat must
            // have come back.
            let healthy = state.generation == 0 || state.completed == state.generation
            guard healthy else { return (false, nil) }
            state.generation += 1
            return (true, state.generation)
        }
        if let generation { launchHeartbeat(generation) }
        lastVerdict.store(healthy, ordering: .relaxed)
        return healthy
    }

    /// The verdict of the latest tick, for `/healthz` (reading it does not tick).
    var isHealthy: Bool { lastVerdict.load(ordering: .relaxed) }

    private func launchHeartbeat(_ generation: UInt64) {
        let group = self.group
        let runtime = self.runtime
        Task(executorPreference: pool) { [self] in
            for loop in group.makeIterator() {
                try? await loop.submit {}.get()
            }
            _ = runtime.statistics()
            // Suspends (no thread waits) until the lifecycle queue gets to it.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                runtime.afterPendingLifecycleWork { continuation.resume() }
            }
            self.state.withLock { state in
                if generation > state.completed { state.completed = generation }
            }
        }
    }
}
