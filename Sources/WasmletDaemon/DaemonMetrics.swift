import Foundation
import Synchronization
import WasmletMetrics
import WasmletRuntime
import WasmletTTRPC

/// What RuntimeService tells about the requests it serves.
protocol RequestObserver: Sendable {
    func request(method: String, code: TTRPCStatusCode, duration: Duration)
    func killRequested(_ key: InstanceKey)
}

/// Feeds `WasmletMetrics` from the daemon: runtime events (starts, exits), API requests, and
/// at scrape time the runtime's statistics. Also holds the readiness flag for `/readyz`.
final class DaemonMetrics: RequestObserver {
    let metrics: WasmletMetrics
    private let pendingKills = Mutex<[InstanceKey: ContinuousClock.Instant]>([:])
    private let accepting = Atomic<Bool>(false)

    init() {
        let box = RuntimeBox()
        metrics = WasmletMetrics(
            states: ["created", "running", "exited"], exitReasons: ExitReason.allCases.map(\.rawValue),
            collect: { box.numbers() })
        _box = box
    }

    private let _box: RuntimeBox

    func attach(_ runtime: WasmletRuntime) { _box.set(runtime) }

    /// Ready once recovered and serving; `draining` turns it off again.
    func setAccepting(_ value: Bool) { accepting.store(value, ordering: .sequentiallyConsistent) }
    var isAccepting: Bool { accepting.load(ordering: .sequentiallyConsistent) }

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
        case .created, .deleted:
            break
        }
    }

    func request(method: String, code: TTRPCStatusCode, duration: Duration) {
        metrics.recordRequest(method: method, code: code.name, seconds: Self.seconds(duration))
        if method == "Start", code == .ok { metrics.recordInstantiate(seconds: Self.seconds(duration)) }
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
    func set(_ runtime: WasmletRuntime) { holder.withLock { $0 = runtime } }

    func numbers() -> RuntimeNumbers {
        guard let runtime = holder.withLock({ $0 }) else { return RuntimeNumbers() }
        let s = runtime.statistics()
        return RuntimeNumbers(
            instancesByState: ["created": s.created, "running": s.running, "exited": s.exited],
            memoryReservedBytes: s.memoryReservedBytes, memoryBudgetBytes: s.memoryBudgetBytes,
            moduleCacheEntries: s.moduleCacheEntries, moduleCacheBytes: s.moduleCacheBytes,
            moduleCacheHits: s.moduleCacheHits, moduleCacheMisses: s.moduleCacheMisses,
            fuelConsumedTotal: s.fuelConsumedTotal, warmInstancesIdle: s.warmInstancesIdle)
    }
}
