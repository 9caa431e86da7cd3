import Dispatch
import Foundation
import Glibc
import Synchronization
import WasmKit

/// Services (instances with an HTTP trigger) and the per-request runs of their module.
///
/// A service is an ordinary instance record (created, durable, killed, deleted like any other),
/// but its start hands its listeners to the ``ServingHost`` instead of running `_start`, and
/// no thread is kept for it. Each request is then a run of the module that is *not* an
/// instance record: no table entry, no event, so no journal write; it counts against the
/// instance limit and the node memory budget while it runs, and it is killed by its deadline,
/// its handle, or the service's kill.
///
/// A request takes no lock of the runtime's: its service's ``ServiceRuns`` holds what a run
/// needs, admission is atomic (``InstanceAdmission``), and its deadline is an entry in
/// ``RequestDeadlines``. Under load the runtime's one lock was where requests queued.
extension WasmletRuntime {
    /// Start for a service: its listeners go to the serving host.
    func startServed(_ key: InstanceKey, trigger: HTTPTriggerSpec) throws {
        guard let servingHost else {
            throw RuntimeError.failedPrecondition("this daemon has no HTTP trigger, so instance \(key) cannot be served")
        }
        let (record, descriptors, runs) = try state.withLock { state throws -> (InstanceRecord, [Int32], ServiceRuns) in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            guard record.state == .created else {
                throw RuntimeError.failedPrecondition("instance \(key) is \(record.state.rawValue), not created")
            }
            var descriptors: [Int32] = []
            do {
                for socket in record.listenerSockets { descriptors.append(try socket.duplicate()) }
            } catch {
                for fd in descriptors { close(fd) }
                throw error
            }
            record.state = .running
            record.startedAt = Date()
            let stack = record.spec.limits.stackBytes ?? configuration.defaultStackBytes
            let runs = ServiceRuns(record: record, engine: Self.engine(stackBytes: stack, in: &state), stackBytes: stack, runtime: self)
            record.serviceRuns = runs
            return (record, descriptors, runs)
        }
        emit(.started(state.withLock { _ in record.snapshot }))
        let session: any ServingSession
        do {
            let log: ServiceLog?
            do {
                log = try record.spec.stdio.stderr.map { try ServiceLog(path: $0, label: key.description) }
            } catch {
                for fd in descriptors { close(fd) }
                throw error
            }
            let instance = ServedInstance(
                key: key, spec: record.spec, trigger: trigger, listenerDescriptors: descriptors, listeners: record.boundListeners,
                log: log, runs: runs)
            session = try servingHost.startServing(instance)
        } catch {
            let result = state.withLock { state -> (InstanceSnapshot, [CheckedContinuation<ExitRecord, any Error>])? in
                guard record.state == .running else { return nil }
                let exit = ExitRecord(
                    code: ExitRecord.failedToStartExitCode, reason: .failedToStart, message: "cannot serve: \(error)",
                    startedAt: record.startedAt)
                return markExited(record, exit, in: &state)
            }
            if let (snapshot, waiters) = result { deliver(snapshot, waiters) }
            return
        }
        // A kill that came while the host was starting found no session to stop.
        let killedMeanwhile = state.withLock { _ -> Bool in
            record.servingSession = session
            return record.state != .running
        }
        if killedMeanwhile {
            session.stop()
            runs.stop()
        }
    }

    /// How many of a running service's requests were answered by a slice on their event loop,
    /// and how many slices were outgrown and run again (see `ServiceRuns.run`); nil when `key`
    /// is not a running service.
    public func requestSliceCounts(of key: InstanceKey) -> (kept: UInt64, outgrown: UInt64)? {
        state.withLock { $0.instances[key]?.serviceRuns }?.sliceCounts
    }

    /// Kill for a service: the host stops serving, running requests are killed, and the
    /// service exits with 128+signal at once. False when `key` is not a running service.
    func stopServed(_ key: InstanceKey, serial: UInt32, signal: Int32) -> Bool {
        let result = state.withLock { state -> ((InstanceSnapshot, [CheckedContinuation<ExitRecord, any Error>]), (any ServingSession)?, ServiceRuns?)? in
            guard let record = state.instances[key], record.serial == serial, record.state == .running,
                record.spec.httpTrigger != nil
            else { return nil }
            record.stopRequest = .killed(signal: signal)
            var exit = ExitRecord(code: 0, reason: .killed, startedAt: record.startedAt)
            record.applyStopRequest(to: &exit)
            let session = record.servingSession
            record.servingSession = nil
            return (markExited(record, exit, in: &state), session, record.serviceRuns)
        }
        guard let (exited, session, runs) = result else { return false }
        session?.stop()
        runs?.stop()
        deliver(exited.0, exited.1)
        return true
    }
}

/// The per-request runs of one running service: what a run needs, taken from its record at
/// the service's start, and the runs going on now, so the service's kill reaches each.
public final class ServiceRuns: Sendable {
    let key: InstanceKey
    private let module: LoadedModule
    private let routeModules: [String: LoadedModule]
    /// The service's spec as each run gets it: no stdio, no listeners; args and env per request.
    private let spec: InstanceSpec
    private let engine: Engine
    private let stackBytes: UInt64
    private let memoryCap: UInt64
    /// What each run charges the node budget while it runs.
    private let charge: UInt64
    private let deadlineMilliseconds: UInt64
    private let committedAdmission: Bool
    private let fifoWait: Duration
    private let escalation: Duration
    private let budget: NodeMemoryBudget
    private let admission: InstanceAdmission
    private let deadlines: RequestDeadlines
    private let pool: InstancePool?
    private let counters: LiveCounters
    private let hooks: RuntimeHooks
    private let lifecycle: DispatchQueue
    /// The fuel of a first run on the caller's thread; nil: never (see `run`).
    private let sliceFuel: UInt64?
    /// Requests still to go straight to a guest thread since a slice was outgrown.
    private let slicesSkipped = Atomic<Int>(0)
    /// Once a slice is outgrown, this many requests skip it: a service whose requests all
    /// need more pays a wasted slice for one request in 65.
    public static let slicesSkippedAfterOutgrowing = 64
    private let slicesKept = Atomic<UInt64>(0)
    private let slicesOutgrown = Atomic<UInt64>(0)
    /// Requests answered by a run on the caller's thread, and runs there thrown away.
    public var sliceCounts: (kept: UInt64, outgrown: UInt64) {
        (slicesKept.load(ordering: .relaxed), slicesOutgrown.load(ordering: .relaxed))
    }

    private struct State {
        var stopped = false
        var running: [UInt64: RequestRunControl] = [:]
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    init(record: InstanceRecord, engine: Engine, stackBytes: UInt64, runtime: WasmletRuntime) {
        let configuration = runtime.configuration
        key = record.spec.key
        module = record.module
        routeModules = record.routeModules
        var spec = record.spec
        spec.stdio = StdioSpec()
        spec.listeners = []
        spec.inheritedListeners = []
        self.spec = spec
        self.engine = engine
        self.stackBytes = stackBytes
        memoryCap = record.memoryCap
        committedAdmission = configuration.memoryAdmission == .committed
        charge = committedAdmission ? configuration.instanceOverheadBytes &+ stackBytes : record.memoryCap
        deadlineMilliseconds = spec.limits.timeoutMilliseconds ?? HTTPTriggerSpec.defaultDeadlineMilliseconds
        fifoWait = configuration.fifoOpenTimeout
        escalation = configuration.killEscalationTimeout
        budget = runtime.budget
        admission = runtime.admission
        deadlines = runtime.requestDeadlines
        pool = configuration.warmInstancesPerModule > 0 ? runtime.pool : nil
        counters = runtime.counters
        hooks = runtime.hooks
        lifecycle = runtime.lifecycle
        // A run thrown away must have had no effect: without preopens a request run touches
        // nothing but its own memory and in-memory stdio.
        sliceFuel = spec.preopens.isEmpty && pool != nil ? configuration.requestSliceFuel : nil
    }

    /// Runs the service's module once, for one request. `completion` is called exactly once:
    /// on the guest's thread; on the calling thread before `run` returns, for a run that fit its
    /// slice there (`onCallerThread`); or, for a run whose thread had to be abandoned after a
    /// kill, on the lifecycle queue.
    ///
    /// `onCallerThread`: the caller (an event loop) allows a first try right here, bounded by
    /// `RuntimeConfiguration.requestSliceFuel`, on a warm instance, never waiting. A try that
    /// outgrows that is thrown away unseen (its stdout and held-back stderr dropped) and the
    /// request runs again on a guest thread, as every run did before.
    ///
    /// Throws FAILED_PRECONDITION once the service is stopped, INVALID_ARGUMENT for a module
    /// that is not one of its routes', and RESOURCE_EXHAUSTED when admission refuses the run
    /// (instance limit, memory budget).
    @discardableResult
    public func run(
        _ input: RequestInput, onCallerThread: Bool = false, completion: @escaping @Sendable (RequestOutcome) -> Void
    ) throws -> RequestHandle {
        if let digest = input.moduleDigest, digest != module.digest, routeModules[digest] == nil {
            throw RuntimeError.invalidArgument("module \(digest) is not one of service \(key)'s")
        }
        try admission.admit(request: true)
        guard budget.tryCharge(charge) else {
            admission.release(request: true)
            throw RuntimeError.resourceExhausted(
                "node memory budget exhausted: \(budget.chargedBytes) of \(budget.limitBytes) bytes charged, \(charge) more asked")
        }
        let run = RequestRunControl(interrupter: GuestInterrupter(), deadlines: deadlines)
        // Under the lock that the service's stop takes, so no run escapes that stop.
        let id = state.withLock { state -> UInt64? in
            guard !state.stopped else { return nil }
            state.nextID &+= 1
            state.running[state.nextID] = run
            return state.nextID
        }
        guard let id else {
            budget.release(charge)
            admission.release(request: true)
            throw RuntimeError.failedPrecondition("instance \(key) is not a running service")
        }
        var spec = self.spec
        spec.args = input.args
        spec.environment = input.environment
        let module = input.moduleDigest.flatMap { routeModules[$0] } ?? self.module
        let fuelBudget = spec.limits.fuel
        let startedAt = Date()
        let finish: @Sendable (GuestOutcome, [UInt8], Bool, MemoryLimiter) -> Void = { [self] outcome, stdout, overflowed, limiter in
            guard let stopRequest = run.claimCompletion() else { return }
            state.withLock { _ = $0.running.removeValue(forKey: id) }
            limiter.releaseCharge()
            budget.release(charge)
            admission.release(request: true)
            let exit = ExitRecord(outcome: outcome, fuelBudget: fuelBudget, stopRequest: stopRequest, startedAt: startedAt)
            counters.addRequestFuel(exit.fuelConsumed)
            completion(RequestOutcome(exit: exit, stdout: stdout, outputOverflowed: overflowed))
        }
        func guestRun(_ stdio: RequestStdio, _ limiter: MemoryLimiter, interrupter: GuestInterrupter, fuelSlice: UInt64?) -> GuestRun {
            var guest = GuestRun(
                module: module, spec: spec, engine: engine, memoryCap: memoryCap, interrupter: interrupter,
                fifoWait: fifoWait, pool: pool, stackBytes: stackBytes, limiter: limiter, counters: counters, hooks: hooks,
                requestStdio: stdio)
            guest.fuelSlice = fuelSlice
            return guest
        }
        if onCallerThread, let sliceFuel, takeSlice() {
            let stdio = RequestStdio(input: input.body, maxOutputBytes: input.maxOutputBytes, holdingStderr: true, stderrLine: input.stderrLine)
            let limiter = MemoryLimiter(capBytes: memoryCap, budget: committedAdmission ? budget : nil)
            // Its own interrupter, never signalled: a kill meanwhile marks `run`, and the slice
            // is over before a signal would matter; a kept result still reports the kill.
            let outcome = guestRun(stdio, limiter, interrupter: GuestInterrupter(), fuelSlice: sliceFuel).execute()
            if case .outgrewSlice(let ran) = outcome.ending {
                limiter.releaseCharge()
                if ran {
                    slicesSkipped.store(Self.slicesSkippedAfterOutgrowing, ordering: .relaxed)
                    slicesOutgrown.wrappingAdd(1, ordering: .relaxed)
                    counters.countSlice(kept: false)
                }
            } else {
                slicesKept.wrappingAdd(1, ordering: .relaxed)
                counters.countSlice(kept: true)
                stdio.releaseHeldStderr()
                finish(outcome, stdio.output, stdio.outputOverflowed, limiter)
                return RequestHandle {}
            }
        }
        let stdio = RequestStdio(input: input.body, maxOutputBytes: input.maxOutputBytes, stderrLine: input.stderrLine)
        let limiter = MemoryLimiter(capBytes: memoryCap, budget: committedAdmission ? budget : nil)
        let guest = guestRun(stdio, limiter, interrupter: run.interrupter, fuelSlice: nil)
        let escalation = self.escalation
        let lifecycle = self.lifecycle
        let stopRun: @Sendable (InstanceRecord.StopRequest) -> Void = { request in
            guard run.requestStop(request) else { return }
            lifecycle.asyncAfter(deadline: .now() + escalation.timeInterval) {
                finish(GuestOutcome(ending: .interrupted), [], false, limiter)
            }
        }
        let deadline = deadlineMilliseconds
        run.armDeadline(milliseconds: deadline) { stopRun(.deadline(milliseconds: deadline)) }
        do {
            try GuestThread.spawn {
                let outcome = guest.execute()
                GuestThread.finishing { finish(outcome, stdio.output, stdio.outputOverflowed, limiter) }
            }
        } catch {
            finish(GuestOutcome(ending: .failedToStart(GuestRun.text(error))), [], false, limiter)
            return RequestHandle {}
        }
        return RequestHandle { stopRun(.killed(signal: SIGKILL)) }
    }

    /// Whether this request may try a slice: not while requests skip it after one outgrew it.
    private func takeSlice() -> Bool {
        guard slicesSkipped.load(ordering: .relaxed) > 0 else { return true }
        slicesSkipped.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    /// The service stopped: no more runs, and the running ones are killed (no escalation: nobody
    /// waits for their answers).
    func stop() {
        let running = state.withLock { state -> [RequestRunControl] in
            state.stopped = true
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for run in running { _ = run.requestStop(.killed(signal: SIGKILL)) }
    }
}

/// One request's run: who stopped it and whether its completion ran.
final class RequestRunControl: Sendable {
    let interrupter: GuestInterrupter
    private let deadlines: RequestDeadlines
    private struct State {
        var stopRequest: InstanceRecord.StopRequest?
        var completed = false
        var deadline: UInt64?
    }
    private let state = Mutex(State())

    init(interrupter: GuestInterrupter, deadlines: RequestDeadlines) {
        self.interrupter = interrupter
        self.deadlines = deadlines
    }

    /// Records why the run is stopped and signals its guest; false if it was stopped already
    /// or has ended.
    func requestStop(_ request: InstanceRecord.StopRequest) -> Bool {
        let first = state.withLock { state -> Bool in
            guard !state.completed, state.stopRequest == nil else { return false }
            state.stopRequest = request
            return true
        }
        if first { interrupter.requestKill() }
        return first
    }

    /// Claims the one completion; returns the stop request (`.some(nil)` when none), or nil
    /// when the completion has run already.
    func claimCompletion() -> InstanceRecord.StopRequest?? {
        let claimed = state.withLock { state -> (InstanceRecord.StopRequest?, UInt64?)? in
            guard !state.completed else { return nil }
            state.completed = true
            defer { state.deadline = nil }
            return (state.stopRequest, state.deadline)
        }
        guard let (stopRequest, deadline) = claimed else { return nil }
        if let deadline { deadlines.remove(deadline) }
        return .some(stopRequest)
    }

    func armDeadline(milliseconds: UInt64, _ fire: @escaping @Sendable () -> Void) {
        let id = deadlines.add(milliseconds: milliseconds, fire)
        let armed = state.withLock { state -> Bool in
            guard !state.completed else { return false }
            state.deadline = id
            return true
        }
        if !armed { deadlines.remove(id) }
    }
}
