import Foundation
import WasmletRuntime

/// The durable record of one instance: one small JSON file per instance. It holds everything
/// Inspect, List and Wait report, so an instance the daemon recovered after a restart answers
/// exactly like a live one. `version` lets a later daemon read (or refuse) older files.
struct PersistedInstance: Codable, Sendable, Equatable {
    static let currentVersion = 1

    var version: Int = PersistedInstance.currentVersion
    var namespace: String
    var id: String
    var labels: [String: String]
    var moduleDigest: String
    var modulePath: String?
    var state: InstanceSnapshot.State
    var createdAt: Date
    var startedAt: Date?
    var limits: InstanceLimits
    var memoryCapBytes: UInt64
    var serial: UInt32
    var exit: ExitRecord?
    var args: [String]
    var environment: [String: String]
    var preopens: [PreopenSpec]
    var cwd: String?
    var stdio: StdioSpec
    /// The listeners as bound at create; nil when it had none (and in records of daemons
    /// before listeners existed).
    var listeners: [BoundListener]?

    var key: InstanceKey { InstanceKey(namespace: namespace, id: id) }

    init(snapshot: InstanceSnapshot, modulePath: String?) {
        namespace = snapshot.key.namespace
        id = snapshot.key.id
        labels = snapshot.labels
        moduleDigest = snapshot.moduleDigest
        self.modulePath = modulePath
        state = snapshot.state
        createdAt = snapshot.createdAt
        startedAt = snapshot.startedAt
        limits = snapshot.limits
        memoryCapBytes = snapshot.memoryCapBytes
        serial = snapshot.serial
        exit = snapshot.exit
        args = snapshot.spec.args
        environment = snapshot.spec.environment
        preopens = snapshot.spec.preopens
        cwd = snapshot.spec.cwd
        stdio = snapshot.spec.stdio
        listeners = snapshot.listeners.isEmpty ? nil : snapshot.listeners
    }

    /// What a record found on disk at start-up becomes: an instance that was created or running
    /// when the previous daemon died cannot be running now (its guest thread died with it), so
    /// it is reported exited with code 137 and reason daemon_restarted.
    func recovered() -> PersistedInstance {
        guard state != .exited else { return self }
        var copy = self
        copy.state = .exited
        copy.exit = ExitRecord.daemonRestarted(startedAt: startedAt)
        return copy
    }
}
