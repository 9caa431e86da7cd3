import Dispatch
import Foundation

/// The runtime's mutable bookkeeping for one instance. Only touched under the runtime's lock,
/// which is what makes sharing it between threads safe (hence `@unchecked Sendable`).
final class InstanceRecord: @unchecked Sendable {
    enum StopRequest: Equatable {
        case killed(signal: Int32)
        case deadline(milliseconds: UInt64)
    }

    let spec: InstanceSpec
    let module: LoadedModule
    /// A service's route modules by digest, held so the cache cannot evict them while it lives.
    let routeModules: [String: LoadedModule]
    let memoryCap: UInt64
    /// What create charged to the node budget (the overhead under committed admission, the cap
    /// under reserve-caps), released at exit or at the delete of a never-started instance.
    let budgetCharge: UInt64
    let serial: UInt32
    let createdAt = Date()
    /// Position in creation order within this runtime (per-instance metrics pick the oldest).
    var creationOrder: UInt64 = 0
    var state: InstanceSnapshot.State = .created
    var startedAt: Date?
    var exit: ExitRecord?
    var interrupter: GuestInterrupter?
    /// The running guest's memory limiter (nil before start): its peak is the current size,
    /// since wasm memory never shrinks.
    var limiter: MemoryLimiter?
    var stopRequest: StopRequest?
    var deadlineTimer: DispatchSourceTimer?
    /// The pre-opened listeners, held from create until exit (or the delete of an instance
    /// never started), when they are shut down; `boundListeners` stays for Inspect.
    var listenerSockets: [ListeningSocket] = []
    var boundListeners: [BoundListener] = []
    /// CloseIO(stdin): shared with the run, which may not have opened its stdin yet.
    let stdinEnd = StdinEnd()
    /// A service's HTTP trigger while it serves (see ``ServingHost``).
    var servingSession: (any ServingSession)?
    /// A service's per-request runs, from its start, for the service's kill.
    var serviceRuns: ServiceRuns?
    /// Callers blocked in `wait`, by a token so a cancelled wait can remove itself.
    var waiters: [UInt64: CheckedContinuation<ExitRecord, any Error>] = [:]

    init(
        spec: InstanceSpec, module: LoadedModule, routeModules: [String: LoadedModule] = [:], memoryCap: UInt64, budgetCharge: UInt64,
        serial: UInt32
    ) {
        self.spec = spec
        self.routeModules = routeModules
        self.module = module
        self.memoryCap = memoryCap
        self.budgetCharge = budgetCharge
        self.serial = serial
    }

    var isLive: Bool { state != .exited }

    /// Closes the listening ports (see `ListeningSocket`); the guest thread's references, if
    /// any, go with its run.
    func releaseListeners() {
        for socket in listenerSockets { socket.stopListening() }
        listenerSockets = []
    }

    var snapshot: InstanceSnapshot {
        InstanceSnapshot(
            key: spec.key, labels: spec.labels, moduleDigest: module.digest, state: state, createdAt: createdAt,
            startedAt: startedAt, limits: spec.limits, memoryCapBytes: memoryCap, serial: serial, exit: exit, spec: spec,
            listeners: boundListeners, serving: servingSession?.statistics)
    }

    /// Turns a run's outcome into the durable record, using why we stopped it when we did.
    func exitRecord(for outcome: GuestOutcome) -> ExitRecord {
        ExitRecord(outcome: outcome, fuelBudget: spec.limits.fuel, stopRequest: stopRequest, startedAt: startedAt)
    }

    func applyStopRequest(to record: inout ExitRecord) { record.apply(stopRequest) }
}

extension ExitRecord {
    /// A run's outcome as an exit record; `stopRequest` says why an interrupted run was stopped.
    init(outcome: GuestOutcome, fuelBudget: UInt64?, stopRequest: InstanceRecord.StopRequest?, startedAt: Date?) {
        self.init(
            code: 0, reason: .exited, startedAt: outcome.startedAt ?? startedAt, fuelConsumed: outcome.fuelConsumed,
            cpuTimeNanoseconds: outcome.cpuTimeNanoseconds, peakMemoryBytes: outcome.peakMemoryBytes,
            memoryLimitHit: outcome.memoryLimitHit, memoryBudgetHit: outcome.memoryBudgetHit)
        switch outcome.ending {
        case .exited(let code):
            self.code = code
        case .trapped(let message):
            reason = .trapped
            code = ExitRecord.trapExitCode
            self.message = message
        case .outOfFuel:
            reason = .outOfFuel
            code = ExitRecord.trapExitCode
            message = "fuel budget of \(fuelBudget ?? 0) exhausted"
        case .failedToStart(let message):
            reason = .failedToStart
            code = ExitRecord.failedToStartExitCode
            self.message = message
        case .interrupted:
            apply(stopRequest)
        case .outgrewSlice:
            // ServiceRuns runs such a run again on a thread of its own; this is not reached.
            reason = .failedToStart
            code = ExitRecord.failedToStartExitCode
            message = "a run on the caller's thread outgrew its slice and was not run again"
        }
    }

    mutating func apply(_ stopRequest: InstanceRecord.StopRequest?) {
        switch stopRequest ?? .killed(signal: 9) {
        case .killed(let signal):
            reason = .killed
            self.signal = signal
            code = ExitRecord.signalExitCode(signal)
            message = "killed by signal \(signal)"
        case .deadline(let milliseconds):
            reason = .deadlineExceeded
            signal = 9
            code = ExitRecord.signalExitCode(9)
            message = "deadline of \(milliseconds) ms exceeded"
        }
    }
}
