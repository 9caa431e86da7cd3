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
extension WasmletRuntime {
    /// Runs the module of the running service `key` once, for one request. `completion` is
    /// called exactly once, on the guest's thread (or, for a run whose thread had to be
    /// abandoned after a kill, on the lifecycle queue).
    ///
    /// Throws NOT_FOUND / FAILED_PRECONDITION when `key` is not a running service, and
    /// RESOURCE_EXHAUSTED when admission refuses the run (instance limit, memory budget).
    @discardableResult
    public func runRequest(
        for key: InstanceKey, _ input: RequestInput, completion: @escaping @Sendable (RequestOutcome) -> Void
    ) throws -> RequestHandle {
        let run = RequestRunControl(interrupter: GuestInterrupter())
        let admitted = try state.withLock { state throws -> (InstanceRecord, Engine, UInt64, UInt64, UInt64) in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("service \(key) not found") }
            guard record.spec.httpTrigger != nil, record.state == .running else {
                throw RuntimeError.failedPrecondition("instance \(key) is not a running service")
            }
            if let digest = input.moduleDigest, digest != record.module.digest, record.routeModules[digest] == nil {
                throw RuntimeError.invalidArgument("module \(digest) is not one of service \(key)'s")
            }
            try admitInstance(state)
            let stack = record.spec.limits.stackBytes ?? configuration.defaultStackBytes
            let charge = configuration.memoryAdmission == .committed ? configuration.instanceOverheadBytes &+ stack : record.memoryCap
            guard budget.tryCharge(charge) else {
                throw RuntimeError.resourceExhausted(
                    "node memory budget exhausted: \(budget.chargedBytes) of \(configuration.memoryBudgetBytes) bytes charged, \(charge) more asked")
            }
            state.requestsRunning += 1
            // Under the lock that the service's kill takes, so no run escapes that kill.
            record.requests.removeAll { $0.isCompleted }
            record.requests.append(run)
            return (record, Self.engine(stackBytes: stack, in: &state), stack, charge, record.memoryCap)
        }
        let (record, engine, stack, charge, cap) = admitted
        var spec = record.spec
        spec.args = input.args
        spec.environment = input.environment
        spec.stdio = StdioSpec()
        spec.listeners = []
        spec.inheritedListeners = []
        let limiter = MemoryLimiter(capBytes: cap, budget: configuration.memoryAdmission == .committed ? budget : nil)
        let stdio = RequestStdio(input: input.body, maxOutputBytes: input.maxOutputBytes, stderrLine: input.stderrLine)
        let module = input.moduleDigest.flatMap { record.routeModules[$0] } ?? record.module
        let guest = GuestRun(
            module: module, spec: spec, engine: engine, memoryCap: cap, interrupter: run.interrupter,
            fifoWait: configuration.fifoOpenTimeout, pool: configuration.warmInstancesPerModule > 0 ? pool : nil,
            stackBytes: stack, limiter: limiter, counters: counters, hooks: hooks, requestStdio: stdio)
        let fuelBudget = spec.limits.fuel
        let startedAt = Date()
        let finish: @Sendable (GuestOutcome, [UInt8], Bool) -> Void = { [self] outcome, stdout, overflowed in
            guard let stopRequest = run.claimCompletion() else { return }
            limiter.releaseCharge()
            budget.release(charge)
            let exit = ExitRecord(outcome: outcome, fuelBudget: fuelBudget, stopRequest: stopRequest, startedAt: startedAt)
            state.withLock { state in
                state.requestsRunning -= 1
                state.fuelConsumedTotal &+= exit.fuelConsumed
            }
            completion(RequestOutcome(exit: exit, stdout: stdout, outputOverflowed: overflowed))
        }
        let escalation = configuration.killEscalationTimeout
        let stopRun: @Sendable (InstanceRecord.StopRequest) -> Void = { [self] request in
            guard run.requestStop(request) else { return }
            lifecycle.asyncAfter(deadline: .now() + escalation.timeInterval) {
                finish(GuestOutcome(ending: .interrupted), [], false)
            }
        }
        let deadline = spec.limits.timeoutMilliseconds ?? HTTPTriggerSpec.defaultDeadlineMilliseconds
        do {
            try GuestThread.spawn {
                let outcome = guest.execute()
                finish(outcome, stdio.output, stdio.outputOverflowed)
            }
        } catch {
            finish(GuestOutcome(ending: .failedToStart(GuestRun.text(error))), [], false)
            return RequestHandle {}
        }
        run.armDeadline(on: lifecycle, milliseconds: deadline) { stopRun(.deadline(milliseconds: deadline)) }
        return RequestHandle { stopRun(.killed(signal: SIGKILL)) }
    }

    /// Start for a service: its listeners go to the serving host.
    func startServed(_ key: InstanceKey, trigger: HTTPTriggerSpec) throws {
        guard let servingHost else {
            throw RuntimeError.failedPrecondition("this daemon has no HTTP trigger, so instance \(key) cannot be served")
        }
        let (record, descriptors) = try state.withLock { state throws -> (InstanceRecord, [Int32]) in
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
            return (record, descriptors)
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
                log: log)
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
        if killedMeanwhile { session.stop() }
    }

    /// Kill for a service: the host stops serving, running requests are killed, and the
    /// service exits with 128+signal at once. False when `key` is not a running service.
    func stopServed(_ key: InstanceKey, serial: UInt32, signal: Int32) -> Bool {
        let result = state.withLock { state -> ((InstanceSnapshot, [CheckedContinuation<ExitRecord, any Error>]), (any ServingSession)?, [RequestRunControl])? in
            guard let record = state.instances[key], record.serial == serial, record.state == .running,
                record.spec.httpTrigger != nil
            else { return nil }
            record.stopRequest = .killed(signal: signal)
            var exit = ExitRecord(code: 0, reason: .killed, startedAt: record.startedAt)
            record.applyStopRequest(to: &exit)
            let session = record.servingSession
            record.servingSession = nil
            let requests = record.requests
            record.requests = []
            return (markExited(record, exit, in: &state), session, requests)
        }
        guard let (exited, session, requests) = result else { return false }
        session?.stop()
        for request in requests { request.stopForService() }
        deliver(exited.0, exited.1)
        return true
    }
}

/// One request's run: who stopped it and whether its completion ran.
final class RequestRunControl: Sendable {
    let interrupter: GuestInterrupter
    private struct State {
        var stopRequest: InstanceRecord.StopRequest?
        var completed = false
        var deadline: DeadlineTimer?
    }
    private let state = Mutex(State())

    init(interrupter: GuestInterrupter) { self.interrupter = interrupter }

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

    /// The service's kill: an escalation is not needed, as nobody waits for this run's answer.
    func stopForService() { _ = requestStop(.killed(signal: SIGKILL)) }

    /// Claims the one completion; returns the stop request (`.some(nil)` when none), or nil
    /// when the completion has run already.
    func claimCompletion() -> InstanceRecord.StopRequest?? {
        state.withLock { state -> InstanceRecord.StopRequest?? in
            guard !state.completed else { return nil }
            state.completed = true
            state.deadline?.timer.cancel()
            state.deadline = nil
            return .some(state.stopRequest)
        }
    }

    var isCompleted: Bool { state.withLock { $0.completed } }

    func armDeadline(on queue: DispatchQueue, milliseconds: UInt64, _ fire: @escaping @Sendable () -> Void) {
        let deadline = DeadlineTimer(timer: DispatchSource.makeTimerSource(queue: queue))
        deadline.timer.setEventHandler(handler: fire)
        deadline.timer.schedule(deadline: .now() + .milliseconds(Int(min(milliseconds, UInt64(Int32.max)))))
        let armed = state.withLock { state -> Bool in
            guard !state.completed else { return false }
            state.deadline = deadline
            return true
        }
        // A Dispatch source released before it is resumed crashes the process, so a run that
        // ended before its deadline was armed (a fast guest) still resumes its timer, cancelled.
        if !armed { deadline.timer.cancel() }
        deadline.timer.resume()
    }

    /// A Dispatch timer is thread-safe but not marked Sendable.
    final class DeadlineTimer: @unchecked Sendable {
        let timer: DispatchSourceTimer
        init(timer: DispatchSourceTimer) { self.timer = timer }
    }
}
