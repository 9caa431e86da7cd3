import Synchronization
import WasmletRuntime

/// What the daemon knows about instances beyond the live runtime:
/// - the instances recovered from disk at start-up (they exited with the previous daemon and
///   are not in the runtime, but Inspect, List, Wait and Delete must still see them);
/// - the module path each live instance was created from (the runtime keeps only the digest;
///   the API and the records also report the path).
package final class InstanceDirectory: Sendable {
    private struct State {
        var recovered: [InstanceKey: PersistedInstance] = [:]
        var modulePaths: [InstanceKey: (serial: UInt32, path: String)] = [:]
    }

    private let state = Mutex(State())

    package init() {}

    package func addRecovered(_ records: [PersistedInstance]) {
        state.withLock { state in
            for record in records { state.recovered[record.key] = record }
        }
    }

    package func recovered(_ key: InstanceKey) -> PersistedInstance? { state.withLock { $0.recovered[key] } }

    package func removeRecovered(_ key: InstanceKey) -> PersistedInstance? {
        state.withLock { $0.recovered.removeValue(forKey: key) }
    }

    package func allRecovered() -> [PersistedInstance] { state.withLock { Array($0.recovered.values) } }

    package var recoveredCount: Int { state.withLock { $0.recovered.count } }

    package func setModulePath(_ path: String?, for key: InstanceKey, serial: UInt32) {
        guard let path else { return }
        state.withLock { $0.modulePaths[key] = (serial, path) }
    }

    package func modulePath(for key: InstanceKey, serial: UInt32) -> String? {
        state.withLock { state in
            guard let entry = state.modulePaths[key], entry.serial == serial else { return nil }
            return entry.path
        }
    }

    package func removeModulePath(for key: InstanceKey, serial: UInt32) {
        state.withLock { state in
            if state.modulePaths[key]?.serial == serial { state.modulePaths[key] = nil }
        }
    }
}
