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
    /// Callers blocked in `wait`, by a token so a cancelled wait can remove itself.
    var waiters: [UInt64: CheckedContinuation<ExitRecord, any Error>] = [:]

    init(spec: InstanceSpec, module: LoadedModule, memoryCap: UInt64, budgetCharge: UInt64, serial: UInt32) {
        self.spec = spec
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
            listeners: boundListeners)
    }

    /// Turns a run's outcome into the durable record, using why we stopped it when we did.
    func exitRecord(for outcome: GuestOutcome) -> ExitRecord {
        var record = ExitRecord(
            code: 0, reason: .exited, startedAt: outcome.startedAt ?? startedAt, fuelConsumed: outcome.fuelConsumed,
            cpuTimeNanoseconds: outcome.cpuTimeNanoseconds, peakMemoryBytes: outcome.peakMemoryBytes,
            memoryLimitHit: outcome.memoryLimitHit, memoryBudgetHit: outcome.memoryBudgetHit)
        switch outcome.ending {
        case .exited(let code):
            record.code = code
        case .trapped(let message):
            record.reason = .trapped
            record.code = ExitRecord.trapExitCode
            record.message = message
        case .outOfFuel:
            record.reason = .outOfFuel
            record.code = ExitRecord.trapExitCode
            record.message = "fuel budget of \(spec.limits.fuel ?? 0) exhausted"
        case .failedToStart(let message):
            record.reason = .failedToStart
            record.code = ExitRecord.failedToStartExitCode
            record.message = message
        case .interrupted:
            applyStopRequest(to: &record)
        }
        return record
    }

    func applyStopRequest(to record: inout ExitRecord) {
        switch stopRequest ?? .killed(signal: 9) {
        case .killed(let signal):
            record.reason = .killed
            record.signal = signal
            record.code = ExitRecord.signalExitCode(signal)
            record.message = "killed by signal \(signal)"
        case .deadline(let milliseconds):
            record.reason = .deadlineExceeded
            record.signal = 9
            record.code = ExitRecord.signalExitCode(9)
            record.message = "deadline of \(milliseconds) ms exceeded"
        }
    }
}
