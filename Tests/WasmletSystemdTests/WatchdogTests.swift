#if os(Linux)
import Glibc
import Synchronization
import Testing
@testable import WasmletSystemd

/// Polls `condition` until it holds (these tests are synchronous); the timeout is a hang guard,
/// generous because other suites run in parallel on a loaded 2-core machine.
private func waitUntil(timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

/// Pure arithmetic of the configuration: no environment.
@Suite struct WatchdogConfigurationArithmeticTests {
    @Test func pingIntervalIsHalfTheTimeout() {
        let configuration = WatchdogConfiguration(timeoutMicroseconds: 30_000_000)
        #expect(configuration.pingIntervalMicroseconds == 15_000_000)
        #expect(configuration.pingInterval == .seconds(15))
        #expect(configuration.timeout == .seconds(30))
    }

    @Test func tinyTimeoutStillHasAPositiveInterval() {
        #expect(WatchdogConfiguration(timeoutMicroseconds: 1).pingIntervalMicroseconds == 1)
    }
}

extension SystemdEnvironmentTests {
    @Suite struct WatchdogConfigurationEnvironmentTests {
        @Test func readsWatchdogUsecForOurPid() throws {
            let configuration = try withEnvironment([
                "WATCHDOG_USEC": "200000", "WATCHDOG_PID": String(getpid()),
            ]) {
                try WatchdogConfiguration.fromEnvironment()
            }
            #expect(configuration == WatchdogConfiguration(timeoutMicroseconds: 200_000))
            #expect(configuration?.pingIntervalMicroseconds == 100_000)
        }

        @Test func withoutWatchdogPidTheWatchdogIsStillOurs() throws {
            let configuration = try withEnvironment(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": nil]) {
                try WatchdogConfiguration.fromEnvironment()
            }
            #expect(configuration?.timeoutMicroseconds == 30_000_000)
        }

        @Test func watchdogOfAnotherProcessIsIgnored() throws {
            let configuration = try withEnvironment([
                "WATCHDOG_USEC": "200000", "WATCHDOG_PID": String(getpid() + 1),
            ]) {
                try WatchdogConfiguration.fromEnvironment()
            }
            #expect(configuration == nil)
        }

        @Test func unsetMeansNoWatchdog() throws {
            let configuration = try withEnvironment(["WATCHDOG_USEC": nil, "WATCHDOG_PID": nil]) {
                try WatchdogConfiguration.fromEnvironment()
            }
            #expect(configuration == nil)
        }

        @Test func malformedUsecThrows() {
            withEnvironment(["WATCHDOG_USEC": "soon", "WATCHDOG_PID": String(getpid())]) {
                #expect(throws: SystemdError.self) { try WatchdogConfiguration.fromEnvironment() }
            }
        }

        @Test func unsetEnvironmentRemovesTheVariables() throws {
            try withEnvironment(["WATCHDOG_USEC": "200000", "WATCHDOG_PID": String(getpid())]) {
                let configuration = try WatchdogConfiguration.fromEnvironment(unsetEnvironment: true)
                #expect(configuration?.timeoutMicroseconds == 200_000)
                #expect(getenv("WATCHDOG_USEC") == nil)
                #expect(getenv("WATCHDOG_PID") == nil)
            }
        }
    }

    /// The driver against a real NOTIFY_SOCKET receiver, with WATCHDOG_USEC=200000.
    @Suite struct WatchdogDriverTests {
        @Test func pingsAtHalfTheIntervalOnlyWhileTheProbeSaysTrue() throws {
            let receiver = try NotifyReceiver()
            try withEnvironment([
                "NOTIFY_SOCKET": receiver.path,
                "WATCHDOG_USEC": "200000",
                "WATCHDOG_PID": String(getpid()),
            ]) {
                let configuration = try #require(try WatchdogConfiguration.fromEnvironment())
                #expect(configuration.pingIntervalMicroseconds == 100_000)

                let healthy = Atomic(true)
                let watchdog = Watchdog(configuration: configuration) { healthy.load(ordering: .relaxed) }
                watchdog.start()
                defer { watchdog.stop() }
                #expect(watchdog.isRunning)

                // Healthy: a ping at once, then one every ~100 ms. Seven pings however long they
                // take (the machine may be loaded: the timeouts here are hang guards), then their
                // gaps: a late tick only lengthens the span of all seven, so its mean gap bounds
                // the interval from below; the timer repeats on its schedule, so a late tick does
                // not delay the next and the shortest gap bounds the interval from above.
                var pings: [NotifyDatagram] = []
                while pings.count < 7, let ping = receiver.receive(timeoutMilliseconds: 10_000) { pings.append(ping) }
                #expect(pings.count == 7)
                #expect(pings.allSatisfy { $0.text == "WATCHDOG=1" })
                let gaps = zip(pings.dropFirst(), pings).map { Int($0.receivedAt - $1.receivedAt) / 1_000 }
                let mean = gaps.reduce(0, +) / max(gaps.count, 1)
                #expect(mean >= 70, "mean gap \(mean) ms, gaps \(gaps)")
                #expect((gaps.min() ?? 0) <= 160, "shortest gap \(gaps.min() ?? 0) ms, gaps \(gaps)")

                // Wedged: the probe says false, so no more pings. Once a tick has seen false (the
                // ticks run one at a time), a ping of an earlier tick has been sent already:
                // discard it, then let three more probes fail, and nothing may have come.
                let failedBefore = watchdog.statistics.probesFailed
                healthy.store(false, ordering: .relaxed)
                #expect(waitUntil { watchdog.statistics.probesFailed > failedBefore })
                receiver.drain()
                let failedOnce = watchdog.statistics.probesFailed
                #expect(waitUntil { watchdog.statistics.probesFailed >= failedOnce + 3 })
                var whileWedged: [NotifyDatagram] = []
                while let queued = receiver.receive(timeoutMilliseconds: 0) { whileWedged.append(queued) }
                #expect(whileWedged.isEmpty, "\(whileWedged.count) pings while the probe said false")
                #expect(watchdog.statistics.probesFailed >= 3)

                // Recovered: pings resume.
                healthy.store(true, ordering: .relaxed)
                #expect(receiver.receive(timeoutMilliseconds: 10_000)?.text == "WATCHDOG=1")

                // Stopped: silence, even though healthy.
                watchdog.stop()
                #expect(!watchdog.isRunning)
                receiver.drain()
                #expect(receiver.collect(forMilliseconds: 300).isEmpty)

                let statistics = watchdog.statistics
                #expect(statistics.pingsSent >= pings.count + 1)
                #expect(statistics.sendFailures == 0)
            }
        }

        @Test func restartAfterStopPingsAgain() throws {
            let receiver = try NotifyReceiver()
            withEnvironment(["NOTIFY_SOCKET": receiver.path]) {
                let watchdog = Watchdog(configuration: WatchdogConfiguration(timeoutMicroseconds: 100_000)) { true }
                watchdog.start()
                watchdog.start()  // idempotent
                #expect(receiver.receive(timeoutMilliseconds: 10_000)?.text == "WATCHDOG=1")
                watchdog.stop()
                watchdog.stop()  // idempotent
                receiver.drain()
                watchdog.start()
                #expect(receiver.receive(timeoutMilliseconds: 10_000)?.text == "WATCHDOG=1")
                watchdog.stop()
            }
        }

        @Test func withoutNotifySocketTicksCountAsSendFailures() throws {
            withEnvironment(["NOTIFY_SOCKET": nil]) {
                let watchdog = Watchdog(configuration: WatchdogConfiguration(timeoutMicroseconds: 40_000)) { true }
                watchdog.start()
                #expect(waitUntil { watchdog.statistics.sendFailures >= 2 })
                watchdog.stop()
                let statistics = watchdog.statistics
                #expect(statistics.pingsSent == 0)
                #expect(statistics.sendFailures >= 2)
            }
        }
    }
}
#endif
