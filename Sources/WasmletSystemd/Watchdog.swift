#if os(Linux)
import Dispatch
import Synchronization

/// Pings systemd's service watchdog (`WATCHDOG=1`), but only while the daemon is healthy.
///
/// Why: a timer that pings unconditionally only proves that one timer thread is alive; a
/// daemon whose scheduler or API loop is wedged would keep pinging and never be restarted.
/// So every tick first asks the caller's `isMakingProgress` probe and sends the ping only
/// when it answers `true`. When it keeps answering `false` for a whole `WatchdogSec=`,
/// systemd kills the daemon (SIGABRT, then the unit's kill logic) and `Restart=on-failure`
/// brings it back.
///
/// Threading: the timer runs on a serial dispatch queue of its own, so a busy or blocked
/// global queue cannot delay pings, and the probe is always called on that queue, never
/// concurrently with itself. The probe must be cheap and must not block (e.g. compare a
/// heartbeat counter the scheduler bumps with the value seen last tick). ``start()`` and
/// ``stop()`` may be called from any thread.
public final class Watchdog: Sendable {
    /// Counters for diagnostics and tests; read with ``statistics``.
    public struct Statistics: Sendable, Equatable {
        /// Ticks whose probe said `true` and whose `WATCHDOG=1` was sent.
        public var pingsSent = 0
        /// Ticks whose probe said `false`, so no ping was sent.
        public var probesFailed = 0
        /// Ticks whose probe said `true` but whose ping could not be sent
        /// (no `NOTIFY_SOCKET`, or a send error).
        public var sendFailures = 0
    }

    private struct State {
        var timer: (any DispatchSourceTimer)?
        var statistics = Statistics()
    }

    /// The timeout and ping interval this driver uses.
    public let configuration: WatchdogConfiguration
    private let notifier: SystemdNotifier
    private let isMakingProgress: @Sendable () -> Bool
    private let queue: DispatchQueue
    private let state = Mutex(State())

    /// - Parameters:
    ///   - configuration: usually ``WatchdogConfiguration/fromEnvironment(unsetEnvironment:)``.
    ///   - notifier: sends the pings.
    ///   - label: the label of the driver's own dispatch queue.
    ///   - isMakingProgress: the health probe, called once per tick on the driver's queue.
    public init(
        configuration: WatchdogConfiguration,
        notifier: SystemdNotifier = SystemdNotifier(),
        label: String = "wasmlet.systemd.watchdog",
        isMakingProgress: @escaping @Sendable () -> Bool
    ) {
        self.configuration = configuration
        self.notifier = notifier
        self.isMakingProgress = isMakingProgress
        self.queue = DispatchQueue(label: label, qos: .userInitiated)
    }

    deinit {
        stop()
    }

    /// Starts ticking every ``WatchdogConfiguration/pingInterval``; the first tick runs at
    /// once. systemd arms the watchdog when start-up completes (`READY=1`), so start the
    /// driver no later than sending ready. Calling it while running does nothing.
    public func start() {
        state.withLock { state in
            guard state.timer == nil else { return }
            let timer = DispatchSource.makeTimerSource(flags: [], queue: queue)
            let interval = Int(clamping: configuration.pingIntervalMicroseconds)
            // Up to 5% late is harmless against a timeout twice the interval; a little
            // leeway lets the kernel batch wake-ups on an idle node.
            timer.schedule(
                deadline: .now(),
                repeating: .microseconds(interval),
                leeway: .microseconds(max(interval / 20, 1))
            )
            // Weak: a strong reference would keep the driver alive for ever (the timer holds
            // the handler); deinit cancels the timer, and a tick racing with it sees nil.
            timer.setEventHandler { [weak self] in self?.tick() }
            state.timer = timer
            timer.resume()
        }
    }

    /// Stops ticking. A tick already running may still call the probe, but no ping is sent
    /// once `stop()` has returned.
    /// Calling it while stopped does nothing; ``start()`` may be called again afterwards.
    public func stop() {
        state.withLock { state in
            state.timer?.cancel()
            state.timer = nil
        }
    }

    /// `true` between ``start()`` and ``stop()``.
    public var isRunning: Bool { state.withLock { $0.timer != nil } }

    /// A snapshot of the counters.
    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// One tick, on `queue`.
    private func tick() {
        // The probe runs outside the lock: it is caller code and may take a moment.
        guard isMakingProgress() else {
            state.withLock { $0.statistics.probesFailed += 1 }
            return
        }
        // Sent under the lock so that no ping leaves after stop() has returned, even from
        // a tick that was already running; the send is one short datagram.
        state.withLock { state in
            guard state.timer != nil else { return }
            if notifier.watchdog() {
                state.statistics.pingsSent += 1
            } else {
                state.statistics.sendFailures += 1
            }
        }
    }
}
#endif
