import Foundation
import SwiftProtobuf
import WasmletAPI
import WasmletConventions
import WasmletRuntime
import WasmletStore

/// Conversions between wasmlet.v1 messages and the runtime's types. Pure functions: the service
/// decides what to call, this file only translates.
enum MessageMapping {
    /// The namespace of a request that names none, as containerd's own default.
    static let defaultNamespace = "default"

    static func key(namespace: String, id: String) -> InstanceKey {
        InstanceKey(namespace: namespace.isEmpty ? defaultNamespace : namespace, id: id)
    }

    /// Request limits: 0 means "default" (memory, stack) or "none" (fuel, timeout).
    static func limits(_ message: Wasmlet_V1_Limits) -> InstanceLimits {
        InstanceLimits(
            memoryBytes: message.memoryBytes == 0 ? nil : message.memoryBytes,
            fuel: message.fuel == 0 ? nil : message.fuel,
            timeoutMilliseconds: message.timeoutMs == 0 ? nil : message.timeoutMs,
            stackBytes: message.stackBytes == 0 ? nil : message.stackBytes,
            maxConnections: message.maxConnections == 0 ? nil : message.maxConnections)
    }

    /// The listeners of a Create. An empty address is 127.0.0.1; the address itself is checked
    /// when it is bound (the runtime's errors name the listener).
    static func listeners(_ messages: [Wasmlet_V1_Listener]) throws -> [ListenerSpec] {
        try messages.map { message in
            guard message.port <= UInt32(UInt16.max) else {
                throw RuntimeError(.invalidArgument, "listener port \(message.port) is out of range (0-65535)")
            }
            return ListenerSpec(address: message.address.isEmpty ? "127.0.0.1" : message.address, port: UInt16(message.port))
        }
    }

    static func boundListener(_ listener: BoundListener) -> Wasmlet_V1_BoundListener {
        var message = Wasmlet_V1_BoundListener()
        message.requested.address = listener.requested.address
        message.requested.port = UInt32(listener.requested.port)
        message.boundAddress = listener.boundAddress
        message.boundPort = UInt32(listener.boundPort)
        message.guestFd = listener.guestFd
        return message
    }

    /// "KEY=VALUE" entries (`EnvironmentSyntax`); a later duplicate wins, as in a shell.
    static func environment(_ entries: [String]) throws -> [String: String] {
        do {
            return try EnvironmentSyntax.table(entries)
        } catch {
            throw RuntimeError(.invalidArgument, error.message)
        }
    }

    /// A Create's spec; its module digest is filled in when the module is loaded.
    static func spec(_ request: Wasmlet_V1_CreateRequest, key: InstanceKey) throws -> InstanceSpec {
        InstanceSpec(
            key: key, labels: request.labels, moduleDigest: "", args: request.args,
            environment: try environment(request.env),
            preopens: request.preopens.map {
                PreopenSpec(guestPath: $0.guestPath, hostPath: $0.hostPath, readOnly: $0.readonly)
            },
            cwd: request.cwd.isEmpty ? nil : request.cwd,
            stdio: StdioSpec(
                stdin: request.stdin.isEmpty ? nil : request.stdin,
                stdout: request.stdout.isEmpty ? nil : request.stdout,
                stderr: request.stderr.isEmpty ? nil : request.stderr),
            limits: limits(request.limits), listeners: try listeners(request.listeners),
            httpTrigger: request.hasHTTPTrigger ? httpTrigger(request.httpTrigger) : nil)
    }

    /// A Create's HTTP trigger: every 0 (and an unset queue length) is the default.
    static func httpTrigger(_ message: Wasmlet_V1_HTTPTrigger) -> HTTPTriggerSpec {
        let defaults = HTTPTriggerSpec()
        func or<T: BinaryInteger>(_ value: T, _ fallback: T) -> T { value == 0 ? fallback : value }
        return HTTPTriggerSpec(
            maxConcurrency: or(message.maxConcurrency, defaults.maxConcurrency),
            queueLength: message.hasQueueLength ? message.queueLength : defaults.queueLength,
            queueTimeoutMilliseconds: or(message.queueTimeoutMs, defaults.queueTimeoutMilliseconds),
            maxBodyBytes: or(message.maxBodyBytes, defaults.maxBodyBytes),
            maxHeaderBytes: or(message.maxHeaderBytes, defaults.maxHeaderBytes),
            maxResponseBytes: or(message.maxResponseBytes, defaults.maxResponseBytes),
            requestReadTimeoutMilliseconds: or(message.requestReadTimeoutMs, defaults.requestReadTimeoutMilliseconds))
    }

    static func httpTrigger(_ spec: HTTPTriggerSpec) -> Wasmlet_V1_HTTPTrigger {
        var message = Wasmlet_V1_HTTPTrigger()
        message.maxConcurrency = spec.maxConcurrency
        message.queueLength = spec.queueLength
        message.queueTimeoutMs = spec.queueTimeoutMilliseconds
        message.maxBodyBytes = spec.maxBodyBytes
        message.maxHeaderBytes = spec.maxHeaderBytes
        message.maxResponseBytes = spec.maxResponseBytes
        message.requestReadTimeoutMs = spec.requestReadTimeoutMilliseconds
        message.routes = spec.routes.map { route in
            var row = Wasmlet_V1_HTTPRoute()
            row.route = route.route
            row.digest = route.moduleDigest
            return row
        }
        return message
    }

    /// A Create's route table: each route and its module, to load before the Create.
    static func routes(_ message: Wasmlet_V1_HTTPTrigger) throws -> [(route: String, module: ModuleReference)] {
        try message.routes.map { row in
            switch row.module {
            case .path(let path)?: return (row.route, .path(path))
            case .digest(let digest)?: return (row.route, .digest(digest))
            case nil: throw RuntimeError(.invalidArgument, "route \(row.route): a module path or digest is required")
            }
        }
    }

    static func timestamp(_ date: Date) -> Google_Protobuf_Timestamp { Google_Protobuf_Timestamp(date: date) }

    static func state(_ state: InstanceSnapshot.State) -> Wasmlet_V1_State {
        switch state {
        case .created: .created
        case .running: .running
        case .exited: .exited
        }
    }

    static func reason(_ reason: ExitReason) -> Wasmlet_V1_ExitReason {
        switch reason {
        case .exited: .exited
        case .trapped: .trapped
        case .outOfFuel: .outOfFuel
        case .deadlineExceeded: .deadlineExceeded
        case .killed: .killed
        case .failedToStart: .failedToStart
        case .daemonRestarted: .daemonRestarted
        }
    }

    static func exit(_ record: ExitRecord) -> Wasmlet_V1_ExitRecord {
        var message = Wasmlet_V1_ExitRecord()
        message.code = record.code
        message.reason = reason(record.reason)
        message.message = record.message
        if let startedAt = record.startedAt { message.startedAt = timestamp(startedAt) }
        message.exitedAt = timestamp(record.exitedAt)
        message.fuelConsumed = record.fuelConsumed
        message.cpuTimeNs = record.cpuTimeNanoseconds
        message.peakMemoryBytes = record.peakMemoryBytes
        message.memoryLimitHit = record.memoryLimitHit
        message.memoryBudgetHit = record.memoryBudgetHit
        message.signal = UInt32(clamping: record.signal)
        return message
    }

    /// One instance as the API reports it, live or recovered; limits with defaults filled in.
    static func instance(_ record: PersistedInstance, defaultStackBytes: UInt64) -> Wasmlet_V1_Instance {
        instance(
            namespace: record.namespace, id: record.id, labels: record.labels, moduleDigest: record.moduleDigest,
            modulePath: record.modulePath, state: record.state, createdAt: record.createdAt, startedAt: record.startedAt,
            limits: record.limits, memoryCapBytes: record.memoryCapBytes, exit: record.exit, serial: record.serial,
            defaultStackBytes: defaultStackBytes, listeners: record.listeners ?? [], httpTrigger: record.httpTrigger, serving: nil)
    }

    /// The same for a live instance, without building its `PersistedInstance` first (List).
    static func instance(_ snapshot: InstanceSnapshot, modulePath: String?, defaultStackBytes: UInt64) -> Wasmlet_V1_Instance {
        instance(
            namespace: snapshot.key.namespace, id: snapshot.key.id, labels: snapshot.labels,
            moduleDigest: snapshot.moduleDigest, modulePath: modulePath, state: snapshot.state, createdAt: snapshot.createdAt,
            startedAt: snapshot.startedAt, limits: snapshot.limits, memoryCapBytes: snapshot.memoryCapBytes,
            exit: snapshot.exit, serial: snapshot.serial, defaultStackBytes: defaultStackBytes, listeners: snapshot.listeners,
            httpTrigger: snapshot.spec.httpTrigger, serving: snapshot.serving)
    }

    private static func instance(
        namespace: String, id: String, labels: [String: String], moduleDigest: String, modulePath: String?,
        state: InstanceSnapshot.State, createdAt: Date, startedAt: Date?, limits recordLimits: InstanceLimits,
        memoryCapBytes: UInt64, exit recordExit: ExitRecord?, serial: UInt32, defaultStackBytes: UInt64,
        listeners: [BoundListener], httpTrigger: HTTPTriggerSpec?, serving: ServingStatistics?
    ) -> Wasmlet_V1_Instance {
        var message = Wasmlet_V1_Instance()
        message.namespace = namespace
        message.id = id
        message.labels = labels
        message.moduleDigest = moduleDigest
        message.modulePath = modulePath ?? ""
        message.state = Self.state(state)
        message.createdAt = timestamp(createdAt)
        if let startedAt { message.startedAt = timestamp(startedAt) }
        var limits = Wasmlet_V1_Limits()
        limits.memoryBytes = memoryCapBytes
        limits.fuel = recordLimits.fuel ?? 0
        limits.timeoutMs = recordLimits.timeoutMilliseconds ?? 0
        limits.stackBytes = recordLimits.stackBytes ?? defaultStackBytes
        limits.maxConnections = recordLimits.maxConnections ?? 0
        message.limits = limits
        message.listeners = listeners.map(boundListener)
        if let httpTrigger { message.httpTrigger = Self.httpTrigger(httpTrigger) }
        if let serving {
            var stats = Wasmlet_V1_HTTPServiceStats()
            stats.requests = serving.requests
            stats.running = UInt32(clamping: serving.running)
            stats.queued = UInt32(clamping: serving.queued)
            message.httpStats = stats
        }
        if let recordExit { message.exit = Self.exit(recordExit) }
        // The serial of a recovered instance is gone with the process that issued it; report a
        // stable non-zero stand-in so pid-like consumers never see 0.
        message.serial = serial == 0 ? UInt32.max : serial
        return message
    }
}
