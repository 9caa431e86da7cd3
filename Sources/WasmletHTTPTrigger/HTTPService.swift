import Logging
import NIOCore
import Synchronization
import WasmletRuntime

/// One running service: what happens to a request once its connection has read it whole.
/// The gate, a run of the module through the runtime, and the answer. Not tied to a connection
/// or to NIO beyond the event loop that times the queue, so it can be driven alone.
final class HTTPService: Sendable {
    let key: InstanceKey
    let trigger: HTTPTriggerSpec
    private let runs: ServiceRuns
    private let environment: [String: String]
    private let deadlineMilliseconds: UInt64
    private let serverSoftware: String
    private let gate: RequestGate
    private let logger: Logger
    private let observer: (any HTTPTriggerObserver)?
    /// False once stopped: from then on nothing is reported, so a stopped service's series,
    /// dropped at its stop, are never made again by its last requests.
    private let reporting = Mutex<Bool>(true)
    let label: String
    private let stopped = Atomic<Bool>(false)
    private let requests = Atomic<UInt64>(0)
    private let connections = Atomic<Int>(0)
    let maxConnections: Int
    /// The route table, tried in order (`HTTPRoute.table`).
    let routes: [HTTPRoute]
    /// Where the requests' stderr lines go: the service's own log (`kubectl logs` under
    /// containerd), or the daemon's (the journal) when it has none.
    private let stderrLine: @Sendable ([UInt8]) -> Void

    init(instance: ServedInstance, serverSoftware: String, logger: Logger, observer: (any HTTPTriggerObserver)?) {
        key = instance.key
        trigger = instance.trigger
        runs = instance.runs
        environment = instance.spec.environment
        deadlineMilliseconds = instance.spec.limits.timeoutMilliseconds ?? HTTPTriggerSpec.defaultDeadlineMilliseconds
        self.serverSoftware = serverSoftware
        gate = RequestGate(maxConcurrency: Int(instance.trigger.maxConcurrency), queueLength: Int(instance.trigger.queueLength))
        var logger = logger
        logger[metadataKey: "instance"] = "\(instance.key)"
        self.logger = logger
        self.observer = observer
        label = instance.key.description
        maxConnections = Int(instance.spec.limits.maxConnections ?? 1024)
        routes = HTTPRoute.table(instance.trigger)
        if let log = instance.log {
            stderrLine = { line in log.write(line: line) }
        } else {
            stderrLine = { [logger] line in logger.info("\(String(decoding: line, as: UTF8.self))", metadata: ["stream": "stderr"]) }
        }
    }

    /// A request in progress, as its connection can stop it (the client left).
    final class InFlight: Sendable {
        private enum Phase {
            case queued(UInt64)
            case running(RequestHandle)
            case done
        }
        private let phase = Mutex<Phase>(.queued(0))
        private let gate: RequestGate
        private let unqueued: @Sendable () -> Void

        fileprivate init(gate: RequestGate, unqueued: @escaping @Sendable () -> Void) {
            self.gate = gate
            self.unqueued = unqueued
        }

        /// Only from the placeholder: the grant may already have run on another thread.
        fileprivate func set(queued token: UInt64) {
            phase.withLock { phase in
                if case .queued(0) = phase { phase = .queued(token) }
            }
        }

        fileprivate func set(running handle: RequestHandle) -> Bool {
            phase.withLock { phase in
                if case .done = phase { return false }
                phase = .running(handle)
                return true
            }
        }

        fileprivate func finish() { phase.withLock { $0 = .done } }

        /// The client left: a queued request leaves the queue, a running guest is killed.
        func cancel() {
            let current = phase.withLock { phase -> Phase in
                defer { phase = .done }
                return phase
            }
            switch current {
            case .queued(let token): if token != 0 && gate.cancel(token) { unqueued() }
            case .running(let handle): handle.kill()
            case .done: break
            }
        }
    }

    var requestCount: UInt64 { requests.load(ordering: .relaxed) }
    var counts: (running: Int, queued: Int) { gate.counts }

    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        reporting.withLock { live in
            guard live else { return }
            live = false
            observer?.serviceStopped(service: label)
        }
    }

    /// Reports to the observer while the service runs.
    func report(_ body: (any HTTPTriggerObserver) -> Void) {
        guard let observer else { return }
        reporting.withLock { live in if live { body(observer) } }
    }
    var isStopped: Bool { stopped.load(ordering: .sequentiallyConsistent) }

    /// Counts a new connection; false when the service is at its connection limit or stopped.
    func connectionOpened() -> Bool {
        guard !isStopped else { return false }
        if connections.wrappingAdd(1, ordering: .relaxed).newValue > maxConnections {
            connections.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func connectionClosed() { connections.wrappingSubtract(1, ordering: .relaxed) }

    /// Answers one request: `answer` is called exactly once, from any thread (before this returns,
    /// when the request ran on the calling event loop).
    func respond(
        to request: CGIRequest, body: [UInt8], eventLoop: any EventLoop, answer: @escaping @Sendable (HTTPAnswer) -> Void
    ) -> InFlight {
        requests.wrappingAdd(1, ordering: .relaxed)
        let inFlight = InFlight(gate: gate) { [self] in report { $0.queueDepthChanged(service: label, by: -1) } }
        guard !isStopped else {
            answer(HTTPAnswer(.serviceStopping))
            return inFlight
        }
        let input = RequestInput(
            args: request.arguments, environment: request.environment(service: environment, serverSoftware: serverSoftware),
            body: body, maxOutputBytes: Int(trigger.maxResponseBytes),
            stderrLine: stderrLine, moduleDigest: request.route.moduleDigest)
        // `here`: the event loop that read the request may run it first, for a slice (see
        // `ServiceRuns.run`); a request granted later, from the queue, runs on a guest thread, so
        // a queue is never drained on an event loop.
        let run: @Sendable (_ here: Bool) -> Void = { [self] here in
            do {
                let handle = try runs.run(input, onCallerThread: here) { [self] outcome in
                    gate.leave()
                    report { $0.inFlightChanged(service: label, by: -1) }
                    inFlight.finish()
                    answer(HTTPAnswer(outcome, limits: trigger, deadlineMilliseconds: deadlineMilliseconds))
                }
                if !inFlight.set(running: handle) { handle.kill() }
            } catch let error as RuntimeError {
                gate.leave()
                report { $0.inFlightChanged(service: label, by: -1) }
                inFlight.finish()
                answer(HTTPAnswer(error.kind == .resourceExhausted ? .admissionRefused(error.message) : .serviceStopping))
            } catch {
                gate.leave()
                report { $0.inFlightChanged(service: label, by: -1) }
                inFlight.finish()
                answer(HTTPAnswer(.serviceStopping))
            }
        }
        let granted: @Sendable () -> Void = { [self] in
            report { $0.queueDepthChanged(service: label, by: -1) }
            report { $0.inFlightChanged(service: label, by: 1) }
            run(false)
        }
        let timeout = trigger.queueTimeoutMilliseconds
        let expired: @Sendable () -> Void = { [self] in
            report { $0.queueDepthChanged(service: label, by: -1) }
            inFlight.finish()
            answer(HTTPAnswer(.queueTimeout(timeout)))
        }
        let queueTime = TimeAmount.milliseconds(Int64(min(timeout, UInt64(Int64.max / 1_000_000))))
        switch gate.enter(grant: granted, expire: expired, within: queueTime, on: eventLoop) {
        case .granted:
            report { $0.inFlightChanged(service: label, by: 1) }
            run(eventLoop.inEventLoop)
        case .queued(let token):
            report { $0.queueDepthChanged(service: label, by: 1) }
            inFlight.set(queued: token)
        case .full:
            inFlight.finish()
            answer(HTTPAnswer(.overCapacity))
        }
        return inFlight
    }
}

/// The HTTP trigger's measurements, for the daemon's metrics (this module has no metrics library).
public protocol HTTPTriggerObserver: Sendable {
    /// One request answered: its service (namespace/id), status, time from its last byte read
    /// to its answer, and the failure's reason label when it was not the guest's answer.
    func requestAnswered(service: String, status: Int, seconds: Double, failure: String?)
    func inFlightChanged(service: String, by delta: Int)
    func queueDepthChanged(service: String, by delta: Int)
    /// The service stopped (it was killed): its series can go; nothing more is reported for it.
    func serviceStopped(service: String)
}
