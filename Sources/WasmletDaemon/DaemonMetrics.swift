import Foundation
import Synchronization
import WasmletHTTPTrigger
import WasmletMetrics
import WasmletRuntime
import WasmletService
import WasmletStore
import WasmletTTRPC

/// The `[metrics]` settings the daemon's metrics depend on.
struct MetricsSettings: Sendable, Equatable {
    /// Series per instance (labels namespace and id): linear memory, memory cap, fuel, CPU time.
    var perInstance = false
    /// At most this many instances get series; the rest are counted in
    /// `wasmlet_instance_series_omitted` (see `WasmletRuntime.usageReport` for which are kept).
    var perInstanceLimit = 500
}

/// Feeds `WasmletMetrics` from the daemon: runtime events (starts, exits), guest-thread hooks
/// (instantiation time), API requests, and at scrape time the runtime's statistics and the
/// instances recovered from disk (`/readyz` is `DaemonReadiness`).
final class DaemonMetrics: RequestObserver {
    let metrics: WasmletMetrics
    private let pendingKills = Mutex<[InstanceKey: ContinuousClock.Instant]>([:])
    private let box: RuntimeBox

    init(settings: MetricsSettings = MetricsSettings()) {
        let box = RuntimeBox(settings: settings)
        metrics = WasmletMetrics(
            states: ["created", "running", "exited"], exitReasons: ExitReason.allCases.map(\.rawValue),
            collect: { box.numbers() })
        self.box = box
    }

    func attach(_ runtime: WasmletRuntime) { box.set(runtime) }

    /// Instances recovered from disk have exited (with the previous daemon) but are not in the
    /// runtime: `wasmlet_instances{state="exited"}` counts them too, until they are deleted.
    func attach(recovered directory: InstanceDirectory) { box.set(recovered: directory) }

    /// The HTTP trigger's polling after answers, read at each scrape.
    func attach(_ trigger: HTTPTriggerHost) { box.set(trigger) }

    /// For `WasmletRuntime.init`: the instantiation time measured on each guest's thread.
    var runtimeHooks: RuntimeHooks {
        let metrics = self.metrics
        return RuntimeHooks(guestEntered: { entry in
            metrics.recordInstantiate(seconds: Self.seconds(entry.instantiateDuration))
        })
    }

    func recoveredExits(_ count: Int) {
        for _ in 0..<count { metrics.instanceExited(reason: ExitReason.daemonRestarted.rawValue, runSeconds: nil) }
    }

    /// Runtime events (on the lifecycle queue).
    func handle(_ event: RuntimeEvent) {
        switch event {
        case .started:
            metrics.instanceStarted()
        case .exited(let snapshot):
            guard let exit = snapshot.exit else { return }
            let run = exit.startedAt.map { exit.exitedAt.timeIntervalSince($0) }
            metrics.instanceExited(reason: exit.reason.rawValue, runSeconds: run)
            if let requested = pendingKills.withLock({ $0.removeValue(forKey: snapshot.key) }) {
                let latency = ContinuousClock.now - requested
                metrics.recordKillLatency(seconds: Self.seconds(latency))
            }
        case .deleted(let key):
            // A kill of an instance that exited on its own never gets its latency.
            pendingKills.withLock { _ = $0.removeValue(forKey: key) }
        case .created:
            break
        }
    }

    func admissionBegan(_ method: String) { metrics.admissionBegan(method: method) }
    func admissionEnded(_ method: String) { metrics.admissionEnded(method: method) }

    func request(method: String, code: TTRPCStatusCode, duration: Duration) {
        metrics.recordRequest(method: method, code: code.name, seconds: Self.seconds(duration))
    }

    func killRequested(_ key: InstanceKey) {
        pendingKills.withLock { kills in
            if kills[key] == nil, kills.count < 10_000 { kills[key] = .now }
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        let (s, attos) = duration.components
        return Double(s) + Double(attos) / 1e18
    }
}

private final class RuntimeBox: Sendable {
    private let holder = Mutex<WasmletRuntime?>(nil)
    private let directory = Mutex<InstanceDirectory?>(nil)
    private let trigger = Mutex<HTTPTriggerHost?>(nil)
    private let settings: MetricsSettings

    init(settings: MetricsSettings) { self.settings = settings }

    func set(_ runtime: WasmletRuntime) { holder.withLock { $0 = runtime } }

    func set(recovered directory: InstanceDirectory) { self.directory.withLock { $0 = directory } }

    func set(_ trigger: HTTPTriggerHost) { self.trigger.withLock { $0 = trigger } }

    func numbers() -> RuntimeNumbers {
        let recovered = directory.withLock { $0 }?.recoveredCount ?? 0
        guard let runtime = holder.withLock({ $0 }) else {
            return RuntimeNumbers(instancesByState: ["created": 0, "running": 0, "exited": recovered])
        }
        let s = runtime.statistics()
        var numbers = RuntimeNumbers(
            instancesByState: ["created": s.created, "running": s.running, "exited": s.exited + recovered],
            memoryReservedBytes: s.memoryReservedBytes, memoryBudgetBytes: s.memoryBudgetBytes,
            moduleCacheEntries: s.moduleCacheEntries, moduleCacheBytes: s.moduleCacheBytes,
            moduleCacheHits: s.moduleCacheHits, moduleCacheMisses: s.moduleCacheMisses,
            fuelConsumedTotal: s.fuelConsumedTotal, warmInstancesIdle: s.warmInstancesIdle,
            linearMemoryBytes: s.linearMemoryBytes, guestsBlockedInHostCalls: s.guestsBlockedInHostCalls,
            memoryChargedBytes: s.memoryChargedBytes, memoryBudgetDenials: s.memoryBudgetDenials,
            requestSlicesKept: s.requestSlicesKept, requestSlicesOutgrown: s.requestSlicesOutgrown)
        if let polling = trigger.withLock({ $0 })?.pollingTotals {
            numbers.httpPollCaughtRequests = polling.caught
            numbers.httpPollSeconds = polling.seconds
        }
        if settings.perInstance {
            let report = runtime.usageReport(limit: settings.perInstanceLimit)
            numbers.perInstance = report.instances.map { entry in
                InstanceNumbers(
                    namespace: entry.key.namespace, id: entry.key.id,
                    linearMemoryBytes: entry.state == .running ? entry.usage.memoryBytes : 0,
                    memoryCapBytes: entry.usage.memoryCapBytes, fuelConsumed: entry.usage.fuelConsumed,
                    cpuSeconds: Double(entry.usage.cpuTimeNanoseconds) / 1e9)
            }
            numbers.perInstanceOmitted = report.omitted
        }
        return numbers
    }
}

extension DaemonMetrics: HTTPTriggerObserver {
    func requestAnswered(service: String, status: Int, seconds: Double, failure: String?) {
        metrics.recordHTTPRequest(service: service, status: status, seconds: seconds, failure: failure)
    }

    func inFlightChanged(service: String, by delta: Int) { metrics.changeHTTPInFlight(service: service, by: delta) }

    func queueDepthChanged(service: String, by delta: Int) { metrics.changeHTTPQueueDepth(service: service, by: delta) }

    func serviceStopped(service: String) { metrics.forgetHTTPService(service) }
}
