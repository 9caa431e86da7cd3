import Foundation
import WasmletRuntime

/// The durable record of one instance: one small JSON file per instance. It holds everything
/// Inspect, List and Wait report, so an instance the daemon recovered after a restart answers
/// exactly like a live one. `version` lets a later daemon read (or refuse) older files.
package struct PersistedInstance: Codable, Sendable, Equatable {
    static let currentVersion = 1

    var version: Int = PersistedInstance.currentVersion
    package var namespace: String
    package var id: String
    package var labels: [String: String]
    package var moduleDigest: String
    package var modulePath: String?
    package var state: InstanceSnapshot.State
    package var createdAt: Date
    package var startedAt: Date?
    package var limits: InstanceLimits
    package var memoryCapBytes: UInt64
    package var serial: UInt32
    package var exit: ExitRecord?
    var args: [String]
    var environment: [String: String]
    var preopens: [PreopenSpec]
    var cwd: String?
    var stdio: StdioSpec
    /// The listeners as bound at create; nil when it had none (and in records of daemons
    /// before listeners existed).
    package var listeners: [BoundListener]?
    /// A service's HTTP trigger settings; nil for other instances.
    package var httpTrigger: HTTPTriggerSpec?

    package var key: InstanceKey { InstanceKey(namespace: namespace, id: id) }

    package init(snapshot: InstanceSnapshot, modulePath: String?) {
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
        httpTrigger = snapshot.spec.httpTrigger
    }

    /// What a record found on disk at start-up becomes: an instance that was created or running
    /// when the previous daemon died cannot be running now (its guest thread died with it), so
    /// it is reported exited with code 137 and reason daemon_restarted.
    package func recovered() -> PersistedInstance {
        guard state != .exited else { return self }
        var copy = self
        copy.state = .exited
        copy.exit = ExitRecord.daemonRestarted(startedAt: startedAt)
        return copy
    }
}
