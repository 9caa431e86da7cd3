import Logging
import WasmletRuntime
import WasmletStore

/// The runtime's event callback: keeps the records in step with what happens without a request
/// (an exit: the guest returned, trapped, ran out of fuel or time, or was killed) and logs every
/// exit exactly once. Runs on the runtime's lifecycle queue, in order per instance.
package struct RuntimeEventRecorder: Sendable {
    let store: InstanceStore
    let directory: InstanceDirectory
    let logger: Logger

    package init(store: InstanceStore, directory: InstanceDirectory, logger: Logger) {
        self.store = store
        self.directory = directory
        self.logger = logger
    }

    package func handle(_ event: RuntimeEvent) {
        switch event {
        case .created(let snapshot), .started(let snapshot):
            // Usually already written by the request that caused it; persist() skips repeats.
            persist(snapshot)
        case .exited(let snapshot):
            persist(snapshot)
            logExit(snapshot)
        case .deleted(let key):
            store.forgetTombstone(key)
        }
    }

    private func persist(_ snapshot: InstanceSnapshot) {
        // Often true for created and started (their request wrote them): skip building a
        // record that persist() would drop.
        if store.hasRecord(snapshot.key, serial: snapshot.serial, state: snapshot.state) { return }
        let record = PersistedInstance(
            snapshot: snapshot, modulePath: directory.modulePath(for: snapshot.key, serial: snapshot.serial))
        // Queued, not waited for: the lifecycle queue must not stall on the disk (a Wait is
        // answered from it). In the background: it goes with the next flush a request waits
        // for, or within 10 ms. The store keeps the order, and ShutdownDrain waits for the exits.
        let logger = logger
        store.persist(record, waitForNewer: false, background: true) { error in
            guard let error else { return }
            // No request to fail here; the next write of this instance retries, and recovery
            // reports a record stuck in "running" as daemon_restarted rather than losing it.
            logger.error(
                "cannot record instance state \(snapshot.state.rawValue)",
                metadata: InstanceService.metadata(snapshot.key, error))
        }
    }

    private func logExit(_ snapshot: InstanceSnapshot) {
        guard let exit = snapshot.exit else { return }
        var metadata: Logger.Metadata = [
            "namespace": "\(snapshot.key.namespace)", "id": "\(snapshot.key.id)", "code": "\(exit.code)",
            "reason": "\(exit.reason.rawValue)",
        ]
        if !exit.message.isEmpty { metadata["message"] = "\(exit.message)" }
        let level: Logger.Level = exit.reason == .exited ? .info : .notice
        logger.log(level: level, "instance exited", metadata: metadata)
    }
}
