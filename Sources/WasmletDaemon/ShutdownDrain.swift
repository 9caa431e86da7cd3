import Glibc
import Logging
import WasmletRuntime
import WasmletService
import WasmletStore
import WasmletSystemd
import WasmletTTRPC

/// SIGTERM/SIGINT: wind down without losing anything.
/// 1. `STOPPING=1`; Create and Start answer UNAVAILABLE "daemon is shutting down" (the server
///    keeps serving, so clients can still Wait, Inspect and Delete).
/// 2. Running instances get the grace period to finish on their own.
/// 3. The rest are killed (SIGKILL; the runtime escalates within its kill timeout).
/// 4. Wait until every exit record is on disk.
/// 5. Close the server (in-flight calls, e.g. Waits that just got their exit, finish first).
struct ShutdownDrain {
    let runtime: WasmletRuntime
    let instances: InstanceService
    let store: InstanceStore
    let server: TTRPCServer
    let notifier: SystemdNotifier
    let logger: Logger

    func run(grace: Duration) async {
        notifier.stopping()
        instances.beginDraining()
        // Ask systemd for the time the drain may take beyond its default stop timeout.
        let budget = grace + runtime.configuration.killEscalationTimeout + .seconds(10)
        notifier.extendTimeout(usec: UInt64(budget.components.seconds) * 1_000_000)

        let clock = ContinuousClock()
        let graceEnd = clock.now + grace
        var running = runningInstances()
        if !running.isEmpty {
            logger.notice("waiting up to \(grace) for \(running.count) running instance(s)")
        }
        while !running.isEmpty, clock.now < graceEnd {
            try? await Task.sleep(for: .milliseconds(20))
            running = runningInstances()
        }

        // Kill what is left; repeat for anything a racing Start launched meanwhile.
        let killDeadline = clock.now + runtime.configuration.killEscalationTimeout + .seconds(5)
        var killed = Set<InstanceKey>()
        while !running.isEmpty, clock.now < killDeadline {
            for snapshot in running where !killed.contains(snapshot.key) {
                do {
                    try runtime.kill(snapshot.key, signal: SIGKILL)
                    killed.insert(snapshot.key)
                    logger.notice(
                        "killing instance after the shutdown grace",
                        metadata: ["namespace": "\(snapshot.key.namespace)", "id": "\(snapshot.key.id)"])
                } catch {
                    // It exited between the list and the kill.
                }
            }
            try? await Task.sleep(for: .milliseconds(20))
            running = runningInstances()
        }
        if !running.isEmpty {
            logger.error("\(running.count) instance(s) still running after the kill; their records stay 'running' and recovery will report them daemon_restarted")
        }

        // Exit events reach the store from the runtime's lifecycle queue; wait for them.
        let flushDeadline = clock.now + .seconds(5)
        var pending = unflushedExits()
        while !pending.isEmpty, clock.now < flushDeadline {
            try? await Task.sleep(for: .milliseconds(10))
            pending = unflushedExits()
        }
        if !pending.isEmpty {
            logger.error("\(pending.count) exit record(s) could not be written before exit")
        }

        await server.shutdown(gracePeriod: .seconds(2))
    }

    private func runningInstances() -> [InstanceSnapshot] {
        runtime.list().filter { $0.state == .running }
    }

    private func unflushedExits() -> [InstanceKey] {
        runtime.list().filter { $0.state == .exited && !store.hasPersistedExit($0.key, serial: $0.serial) }.map(\.key)
    }
}
