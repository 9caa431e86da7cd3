import Dispatch
import Foundation
import Glibc
import Synchronization
import WasmKit

/// Hosts many sandboxed WASI preview1 instances in one process.
///
/// Threads: every method may be called from any thread. Each running guest has a dedicated
/// thread (see `GuestThread`); state changes, deadline timers and events happen on one serial
/// lifecycle queue, so an embedder sees each instance's events in order.
public final class WasmletRuntime: Sendable {
    public let configuration: RuntimeConfiguration
    let modules: ModuleCache
    let pool: InstancePool
    let lifecycle = DispatchQueue(label: "wasmlet.lifecycle")
    let eventHandler: (@Sendable (RuntimeEvent) -> Void)?
    let hooks: RuntimeHooks
    let counters = LiveCounters()
    let budget: NodeMemoryBudget
    /// Live instances and per-request runs against the instance limit (outside `state`).
    let admission: InstanceAdmission
    /// The deadlines of per-request runs (see RequestDeadlines).
    let requestDeadlines: RequestDeadlines
    /// Serves the instances that have an HTTP trigger; nil: such instances cannot start.
    let servingHost: (any ServingHost)?

    struct State: ~Copyable {
        var instances: [InstanceKey: InstanceRecord] = [:]
        var nextSerial: UInt32 = 1
        /// Instances ever created; never wraps, unlike the serial.
        var createdCount: UInt64 = 0
        /// The sum of the memory caps of live instances (what reserve-caps admission charges).
        var reservedBytes: UInt64 = 0
        var fuelConsumedTotal: UInt64 = 0
        var exitsByReason: [ExitReason: UInt64] = [:]
        var engines: [UInt64: Engine] = [:]
        var nextWaiterToken: UInt64 = 0
    }
    let state = Mutex(State())

    /// - Parameters:
    ///   - eventHandler: called on the lifecycle queue for every create, start, exit and delete,
    ///     in order; the daemon persists its records from here.
    ///   - hooks: measurements reported from guest threads as they happen (metrics).
    public init(
        configuration: RuntimeConfiguration = RuntimeConfiguration(), eventHandler: (@Sendable (RuntimeEvent) -> Void)? = nil,
        hooks: RuntimeHooks = RuntimeHooks(), servingHost: (any ServingHost)? = nil
    ) throws {
        self.servingHost = servingHost
        self.configuration = configuration
        self.eventHandler = eventHandler
        self.hooks = hooks
        budget = NodeMemoryBudget(limitBytes: configuration.memoryBudgetBytes)
        admission = InstanceAdmission(maxInstances: configuration.maxInstances, ceiling: configuration.instanceCeiling)
        requestDeadlines = RequestDeadlines()
        let pool = InstancePool(maxIdlePerModule: configuration.warmInstancesPerModule)
        self.pool = pool
        // Warm instances of an evicted module would otherwise stay in the pool forever.
        modules = ModuleCache(
            maxEntries: configuration.moduleCacheEntries, maxBytes: configuration.moduleCacheBytes,
            maxModuleBytes: configuration.maxModuleBytes, onEvict: { pool.drain(digest: $0) })
        try GuestInterrupter.installation.get()
        _ = try FuelCell.offset.get()
        // A guest writing to a pipe whose reader left must get EPIPE, not kill the daemon.
        signal(SIGPIPE, SIG_IGN)
    }

    // MARK: Modules

    /// Loads, validates and caches a module file; returns the cached entry on a digest hit.
    @discardableResult
    public func loadModule(path: String) throws -> LoadedModule { try modules.load(path: path) }

    /// Loads, validates and caches a module from bytes.
    @discardableResult
    public func loadModule(bytes: [UInt8]) throws -> LoadedModule { try modules.load(bytes: bytes) }

    /// The cached module with this digest, if it is still cached.
    public func module(digest: String) -> LoadedModule? { modules.lookup(digest: digest) }

    // MARK: Lifecycle

    /// Creates an instance of a loaded module, admitting it against the node memory budget: under
    /// committed admission its fixed overhead is charged now and its linear memory as it grows;
    /// under reserve-caps admission its whole memory cap is reserved now.
    ///
    /// The runtime owns `spec.inheritedListeners` from this call on: they are adopted first, so
    /// that a create failing for any reason closes them (see ``InheritedListener``).
    @discardableResult
    public func create(_ spec: InstanceSpec) throws -> InstanceSnapshot {
        var inherited: [(ListeningSocket, ListenerSpec)] = []
        do {
            for (index, listener) in spec.inheritedListeners.enumerated() {
                inherited.append(try ListeningSocket.adopt(listener, index: index))
            }
        } catch {
            for listener in spec.inheritedListeners { listener.close() }
            throw error
        }
        try Self.validate(spec)
        guard let module = modules.lookup(digest: spec.moduleDigest) else {
            throw RuntimeError.notFound("module \(spec.moduleDigest) is not loaded (never loaded, or evicted from the cache)")
        }
        var routeModules: [String: LoadedModule] = [:]
        for route in spec.httpTrigger?.routes ?? [] where routeModules[route.moduleDigest] == nil {
            guard let loaded = modules.lookup(digest: route.moduleDigest) else {
                throw RuntimeError.notFound("module \(route.moduleDigest) of route \(route.route) is not loaded")
            }
            routeModules[route.moduleDigest] = loaded
        }
        let cap = spec.limits.memoryBytes ?? configuration.defaultMemoryCapBytes
        let charge: UInt64
        switch configuration.memoryAdmission {
        case .committed:
            charge = configuration.instanceOverheadBytes &+ (spec.limits.stackBytes ?? configuration.defaultStackBytes)
        case .reserveCaps:
            charge = cap
        }
        // Bound before the record exists and outside the lock; on any failure below the sockets
        // are released with this array, so a failed create leaves no port open.
        if !spec.listeners.isEmpty || !inherited.isEmpty {
            try state.withLock { state throws in
                guard state.instances[spec.key] == nil else { throw RuntimeError.alreadyExists("instance \(spec.key) already exists") }
            }
        }
        var sockets: [ListeningSocket] = []
        for listener in spec.listeners { sockets.append(try ListeningSocket.open(listener)) }
        // The inherited ones follow the runtime's own, in order, as if bound here.
        sockets += inherited.map(\.0)
        let requested = spec.listeners + inherited.map(\.1)
        let firstListenerFd = UInt32(3 + spec.preopens.count)
        let bound = sockets.enumerated().map { index, socket in
            BoundListener(
                requested: requested[index], boundAddress: socket.bound.address, boundPort: socket.bound.port,
                guestFd: firstListenerFd + UInt32(index))
        }
        let snapshot = try state.withLock { state throws -> InstanceSnapshot in
            guard state.instances[spec.key] == nil else {
                throw RuntimeError.alreadyExists("instance \(spec.key) already exists")
            }
            try admission.admit()
            guard budget.tryCharge(charge) else {
                admission.release()
                let what = configuration.memoryAdmission == .committed ? "committed" : "reserved"
                throw RuntimeError.resourceExhausted(
                    "node memory budget exhausted: \(budget.chargedBytes) of \(configuration.memoryBudgetBytes) bytes \(what), \(charge) more asked")
            }
            let record = InstanceRecord(
                spec: spec, module: module, routeModules: routeModules, memoryCap: cap, budgetCharge: charge, serial: state.nextSerial)
            record.listenerSockets = sockets
            record.boundListeners = bound
            record.creationOrder = state.createdCount
            state.createdCount += 1
            state.nextSerial = state.nextSerial == UInt32.max ? 1 : state.nextSerial + 1
            state.instances[spec.key] = record
            state.reservedBytes += cap
            return record.snapshot
        }
        emit(.created(snapshot))
        return snapshot
    }

    /// Starts a created instance on a thread of its own.
    public func start(_ key: InstanceKey) throws {
        if let trigger = try state.withLock({ state throws in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            return record.spec.httpTrigger
        }) {
            return try startServed(key, trigger: trigger)
        }
        let (record, engine, stack, listeners) = try state.withLock { state throws -> (InstanceRecord, Engine, UInt64, [ListeningSocket]) in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            guard record.state == .created else {
                throw RuntimeError.failedPrecondition("instance \(key) is \(record.state.rawValue), not created")
            }
            record.state = .running
            record.startedAt = Date()
            record.interrupter = GuestInterrupter()
            record.limiter = MemoryLimiter(
                capBytes: record.memoryCap, budget: configuration.memoryAdmission == .committed ? budget : nil)
            let stack = record.spec.limits.stackBytes ?? configuration.defaultStackBytes
            return (record, Self.engine(stackBytes: stack, in: &state), stack, record.listenerSockets)
        }
        let run = GuestRun(
            module: record.module, spec: record.spec, engine: engine, memoryCap: record.memoryCap,
            interrupter: record.interrupter!, fifoWait: configuration.fifoOpenTimeout,
            pool: configuration.warmInstancesPerModule > 0 ? pool : nil, stackBytes: stack, limiter: record.limiter!,
            counters: counters, hooks: hooks, listeners: ListenerHandoff(listeners),
            maxConnections: record.spec.limits.maxConnections ?? configuration.defaultMaxConnections,
            stdinEnd: record.stdinEnd)
        let serial = record.serial
        do {
            try GuestThread.spawn { [self] in
                let outcome = run.execute()
                finish(key, serial: serial, outcome: outcome)
            }
        } catch {
            finish(key, serial: serial, outcome: GuestOutcome(ending: .failedToStart(GuestRun.text(error))))
            return
        }
        if let timeout = record.spec.limits.timeoutMilliseconds {
            let timer = DispatchSource.makeTimerSource(queue: lifecycle)
            timer.setEventHandler { [weak self] in self?.stop(key, serial: serial, request: .deadline(milliseconds: timeout)) }
            timer.schedule(deadline: .now() + .milliseconds(Int(min(timeout, UInt64(Int32.max)))))
            state.withLock { _ in record.deadlineTimer = timer }
            timer.resume()
        }
        if let delay = configuration.demoteLongRunningAfter, let interrupter = record.interrupter {
            checkDemotion(interrupter, after: delay, since: nil)
        }
        let snapshot = state.withLock { _ in record.snapshot }
        emit(.started(snapshot))
    }

    /// Priority follows what a running guest does: over each window (the first ends
    /// `demoteLongRunningAfter` after the start; each next one is twice as long, at most 2 s), a
    /// guest that was runnable (computing) for most of it runs at nice `longRunningNice`, one
    /// that was mostly blocked in host calls at its normal priority. So CPU-bound guests yield
    /// to short ones, while a server waiting in poll for its next request is not served at nice
    /// 10 on a busy node, even after a busy start. Runnable counts whether or not the CPU was
    /// free, so the verdict does not depend on the node's load.
    private func checkDemotion(_ interrupter: GuestInterrupter, after window: Duration, since: (wall: UInt64, blocked: UInt64)?) {
        let nice = configuration.longRunningNice
        lifecycle.asyncAfter(deadline: .now() + window.timeInterval) { [weak self] in
            guard let self, !interrupter.hasFinished else { return }
            let now = GuestInterrupter.monotonicNow()
            let next = min(window * 2, .seconds(2))
            guard let activity = interrupter.activity(now: now) else {  // the thread has not bound yet
                self.checkDemotion(interrupter, after: next, since: nil)
                return
            }
            let start = since ?? (activity.boundAt, 0)
            let wall = now &- start.wall
            let blocked = activity.blocked &- start.blocked
            if wall > 0 { interrupter.setDemoted(blocked < wall / 2, nice: nice) }
            self.checkDemotion(interrupter, after: next, since: (now, activity.blocked))
        }
    }

    /// Ends an instance: a running guest is stopped wherever it is, a created one never runs.
    /// Any signal ends a guest (WASI has no signal handlers); the exit code is 128+signal.
    public func kill(_ key: InstanceKey, signal: Int32 = SIGKILL) throws {
        guard (1...64).contains(signal) else { throw RuntimeError.invalidArgument("invalid signal \(signal)") }
        let current = try state.withLock { state throws -> (InstanceSnapshot.State, UInt32) in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            return (record.state, record.serial)
        }
        switch current.0 {
        case .exited:
            throw RuntimeError.failedPrecondition("instance \(key) has already exited")
        case .created:
            finishUnstarted(key, signal: signal)
        case .running:
            if !stopServed(key, serial: current.1, signal: signal) {
                stop(key, serial: current.1, request: .killed(signal: signal))
            }
        }
    }

    /// Ends the guest's input (containerd's CloseIO): once what is already in its stdin FIFO has
    /// been read, the guest reads end-of-file, even if no writer ever opened the FIFO. Works
    /// before the start too; a no-op for an exited instance or a stdin that is not a FIFO.
    public func closeStdin(_ key: InstanceKey) throws {
        let end = try state.withLock { state throws -> StdinEnd in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            return record.stdinEnd
        }
        end.close()
    }

    /// Waits until the instance exits and returns its exit record. Cancelling the calling task
    /// ends the wait with `CancellationError` (the instance is unaffected).
    public func wait(_ key: InstanceKey) async throws -> ExitRecord {
        let (record, token) = try state.withLock { state throws -> (InstanceRecord, UInt64) in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            state.nextWaiterToken += 1
            return (record, state.nextWaiterToken)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let exit = state.withLock { _ -> Result<ExitRecord, any Error>? in
                    if let exit = record.exit { return .success(exit) }
                    // Checked under the lock the cancel handler also takes, so no cancel is missed.
                    if Task.isCancelled { return .failure(CancellationError()) }
                    record.waiters[token] = continuation
                    return nil
                }
                if let exit { continuation.resume(with: exit) }
            }
        } onCancel: {
            let waiter = state.withLock { _ in record.waiters.removeValue(forKey: token) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Removes a created or exited instance and releases what it reserved.
    @discardableResult
    public func delete(_ key: InstanceKey) throws -> InstanceSnapshot {
        let snapshot = try state.withLock { state throws -> InstanceSnapshot in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            guard record.state != .running else {
                throw RuntimeError.failedPrecondition("instance \(key) is running; kill it first")
            }
            if record.state == .created {
                record.releaseListeners()
                admission.release()
                state.reservedBytes -= record.memoryCap
                budget.release(record.budgetCharge)
            }
            state.instances[key] = nil
            return record.snapshot
        }
        emit(.deleted(key))
        return snapshot
    }

    /// What an instance uses now: for a running guest, its linear memory, the CPU time of its
    /// thread and the fuel it burnt so far; for an exited one, what its exit record says.
    public func usage(_ key: InstanceKey) throws -> InstanceUsage {
        let probe = try state.withLock { state throws in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            return UsageProbe(record)
        }
        return probe.read()
    }

    /// The usage of up to `limit` instances for per-instance metrics, and how many were left out.
    ///
    /// Which ones, when there are more: live instances (created or running) before exited ones,
    /// and within each group the oldest first (creation order), so the set is stable from one
    /// call to the next. Cost: one pass over all instances under the lock, a sort outside it,
    /// and for each running guest one read of its thread's CPU clock.
    public func usageReport(limit: Int) -> (instances: [InstanceUsageEntry], omitted: Int) {
        let limit = max(0, limit)
        let candidates = state.withLock { state -> [(exited: Bool, order: UInt64, record: InstanceRecord)] in
            var all: [(exited: Bool, order: UInt64, record: InstanceRecord)] = []
            all.reserveCapacity(state.instances.count)
            for record in state.instances.values { all.append((record.state == .exited, record.creationOrder, record)) }
            return all
        }
        var chosen = candidates
        if chosen.count > limit {
            chosen.sort { ($0.exited ? 1 : 0, $0.order) < ($1.exited ? 1 : 0, $1.order) }
            chosen.removeLast(chosen.count - limit)
        }
        let probes = state.withLock { state -> [UsageProbe] in
            chosen.compactMap { candidate in
                // Deleted meanwhile: its series must go now, not at the next scrape.
                guard state.instances[candidate.record.spec.key] === candidate.record else { return nil }
                return UsageProbe(candidate.record)
            }
        }
        let entries = probes.map { InstanceUsageEntry(key: $0.key, state: $0.state, usage: $0.read()) }
        return (entries, candidates.count - entries.count)
    }

    /// What `usage` needs of a record, taken under the lock; read outside it.
    private struct UsageProbe {
        let key: InstanceKey
        let state: InstanceSnapshot.State
        let exit: ExitRecord?
        let limiter: MemoryLimiter?
        let interrupter: GuestInterrupter?
        let memoryCap: UInt64
        let fuelBudget: UInt64

        init(_ record: InstanceRecord) {
            key = record.spec.key
            state = record.state
            exit = record.exit
            limiter = record.limiter
            interrupter = record.interrupter
            memoryCap = record.memoryCap
            fuelBudget = record.spec.limits.fuel ?? GuestRun.unlimitedFuel
        }

        func read() -> InstanceUsage {
            if let exit {
                return InstanceUsage(
                    memoryBytes: exit.peakMemoryBytes, peakMemoryBytes: exit.peakMemoryBytes, memoryCapBytes: memoryCap,
                    cpuTimeNanoseconds: exit.cpuTimeNanoseconds, fuelConsumed: exit.fuelConsumed)
            }
            let memory = limiter?.peakBytes ?? 0
            var fuel: UInt64 = 0
            if let interrupter, let remaining = interrupter.fuelAtKill ?? interrupter.fuelRemaining() {
                fuel = fuelBudget >= remaining ? fuelBudget - remaining : 0
            }
            return InstanceUsage(
                memoryBytes: memory, peakMemoryBytes: memory, memoryCapBytes: memoryCap,
                cpuTimeNanoseconds: interrupter?.threadCPUTime() ?? 0, fuelConsumed: fuel)
        }
    }

    public func inspect(_ key: InstanceKey) throws -> InstanceSnapshot {
        try state.withLock { state throws -> InstanceSnapshot in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            return record.snapshot
        }
    }

    /// `inspect`, without the snapshot when `known` (called under the runtime's lock) says the
    /// caller has this (serial, state) already; see `list(namespace:labels:known:)`.
    public func inspect(_ key: InstanceKey, known: (_ serial: UInt32, InstanceSnapshot.State) -> Bool) throws -> ListedInstance {
        try state.withLock { state throws -> ListedInstance in
            guard let record = state.instances[key] else { throw RuntimeError.notFound("instance \(key) not found") }
            let skip = known(record.serial, record.state)
            return ListedInstance(key: key, serial: record.serial, state: record.state, snapshot: skip ? nil : record.snapshot)
        }
    }

    /// Instances in `namespace` (all namespaces when nil) whose labels include every pair given.
    public func list(namespace: String? = nil, labels: [String: String] = [:]) -> [InstanceSnapshot] {
        list(namespace: namespace, labels: labels) { _, _, _ in false }.compactMap(\.snapshot)
    }

    /// The matching instances in key order, with a snapshot only of those for which `known`
    /// (called in that order, under the runtime's lock: keep it quick, and do not call into the
    /// runtime from it) returns false. For callers that keep a rendering of each instance: an
    /// instance's (serial, state) fixes everything a snapshot shows but its usage.
    public func list(
        namespace: String? = nil, labels: [String: String] = [:],
        known: (InstanceKey, _ serial: UInt32, InstanceSnapshot.State) -> Bool
    ) -> [ListedInstance] {
        // Which records under the lock, their order outside it (a record's key never changes:
        // with thousands of instances the sort takes milliseconds, and every create, start and
        // inspect waits for this lock), their snapshots under it again. Sorting (key, record)
        // pairs, not snapshots: each snapshot copy retains a score of strings and arrays.
        let matching = state.withLock { state in
            state.instances.values.compactMap { record -> (InstanceKey, InstanceRecord)? in
                guard namespace == nil || record.spec.key.namespace == namespace,
                    labels.allSatisfy({ record.spec.labels[$0.key] == $0.value })
                else { return nil }
                return (record.spec.key, record)
            }
        }
        let sorted = matching.sorted { ($0.0.namespace, $0.0.id) < ($1.0.namespace, $1.0.id) }
        return state.withLock { _ in
            sorted.map { key, record in
                let skip = known(key, record.serial, record.state)
                return ListedInstance(key: key, serial: record.serial, state: record.state, snapshot: skip ? nil : record.snapshot)
            }
        }
    }

    public func statistics() -> RuntimeStatistics {
        let cache = modules.statistics
        let warm = pool.idleCount
        return state.withLock { state in
            var created = 0
            var running = 0
            var exited = 0
            var linearMemory: UInt64 = 0
            for record in state.instances.values {
                switch record.state {
                case .created: created += 1
                case .running:
                    running += 1
                    linearMemory &+= record.limiter?.peakBytes ?? 0
                case .exited: exited += 1
                }
            }
            return RuntimeStatistics(
                created: created, running: running, exited: exited, memoryReservedBytes: state.reservedBytes,
                memoryChargedBytes: budget.chargedBytes, memoryBudgetBytes: configuration.memoryBudgetBytes,
                memoryAdmission: configuration.memoryAdmission, memoryBudgetDenials: budget.denials,
                moduleCacheEntries: cache.entries,
                moduleCacheBytes: cache.bytes, moduleCacheHits: cache.hits, moduleCacheMisses: cache.misses,
                fuelConsumedTotal: state.fuelConsumedTotal &+ counters.requestFuelConsumed, exitsByReason: state.exitsByReason,
                warmInstancesIdle: warm, linearMemoryBytes: linearMemory,
                guestsBlockedInHostCalls: counters.blockedInHostCalls, requestRunsInProgress: admission.requestsRunning,
                requestSlicesKept: counters.requestSlices.kept, requestSlicesOutgrown: counters.requestSlices.outgrown)
        }
    }

    /// Calls `body` on the lifecycle queue once everything queued there before it has run (the
    /// event callbacks, deadline timers, kill escalations). For health probes: a call that does
    /// not come means the queue is wedged, and with it exits, deadlines and events. `body` must
    /// be quick and must not block.
    public func afterPendingLifecycleWork(_ body: @escaping @Sendable () -> Void) {
        lifecycle.async(execute: body)
    }

    /// Create, start and wait in one call; the instance is deleted afterwards.
    public func run(_ spec: InstanceSpec) async throws -> ExitRecord {
        try create(spec)
        do {
            try start(spec.key)
        } catch {
            _ = try? delete(spec.key)
            throw error
        }
        let exit = try await wait(spec.key)
        _ = try? delete(spec.key)
        return exit
    }

    // MARK: Internals

    private static func validate(_ spec: InstanceSpec) throws {
        for (name, value) in [("namespace", spec.key.namespace), ("id", spec.key.id)] {
            guard !value.isEmpty, value.utf8.count <= 255 else {
                throw RuntimeError.invalidArgument("\(name) must be 1 to 255 bytes")
            }
            guard !value.contains("/"), !value.contains("\0") else {
                throw RuntimeError.invalidArgument("\(name) \"\(value)\" may not contain '/' or NUL")
            }
        }
        if spec.listeners.count + spec.inheritedListeners.count > 64 { throw RuntimeError.invalidArgument("at most 64 listeners per instance") }
        if spec.limits.maxConnections == 0 { throw RuntimeError.invalidArgument("the connection limit must be positive") }
        if let trigger = spec.httpTrigger {
            if spec.listeners.isEmpty && spec.inheritedListeners.isEmpty {
                throw RuntimeError.invalidArgument("an HTTP trigger needs a listener (--listen)")
            }
            if let problem = trigger.validationError() { throw RuntimeError.invalidArgument(problem) }
        }
        for preopen in spec.preopens {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: preopen.hostPath, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw RuntimeError.invalidArgument("preopen \(preopen.hostPath): not a directory")
            }
            guard !preopen.guestPath.isEmpty else { throw RuntimeError.invalidArgument("preopen \(preopen.hostPath): empty guest path") }
        }
        if let memory = spec.limits.memoryBytes, memory == 0 {
            throw RuntimeError.invalidArgument("memory cap must be positive")
        }
        if let stack = spec.limits.stackBytes, stack < 16 << 10 || stack > 64 << 20 {
            throw RuntimeError.invalidArgument("stack size must be between 16 KiB and 64 MiB")
        }
    }

    /// Refuses one more live instance past `maxInstances`, or past what the kernel lets the
    /// process hold (whichever is smaller), naming the limit that applies.
    /// Fuel metering is a translation-time switch of the engine, and the stack size belongs to
    /// it too, so there is one engine per distinct stack size.
    static func engine(stackBytes: UInt64, in state: inout State) -> Engine {
        if let engine = state.engines[stackBytes] { return engine }
        let engine = Engine(configuration: EngineConfiguration(stackSize: Int(stackBytes), fuelMetering: true))
        state.engines[stackBytes] = engine
        return engine
    }

    private func stop(_ key: InstanceKey, serial: UInt32, request: InstanceRecord.StopRequest) {
        let interrupter = state.withLock { state -> GuestInterrupter? in
            guard let record = state.instances[key], record.serial == serial, record.state == .running else { return nil }
            if record.stopRequest == nil { record.stopRequest = request }
            return record.interrupter
        }
        guard let interrupter else { return }
        interrupter.requestKill()
        lifecycle.asyncAfter(deadline: .now() + configuration.killEscalationTimeout.timeInterval) { [weak self] in
            guard let self else { return }
            let abandoned = GuestOutcome(ending: .interrupted)
            self.finish(key, serial: serial, outcome: abandoned, abandonedAfterKill: true)
        }
    }

    private func finishUnstarted(_ key: InstanceKey, signal: Int32) {
        let snapshot = state.withLock { state -> (InstanceSnapshot, [CheckedContinuation<ExitRecord, any Error>])? in
            guard let record = state.instances[key], record.state == .created else { return nil }
            record.stopRequest = .killed(signal: signal)
            var exit = ExitRecord(code: 0, reason: .killed)
            record.applyStopRequest(to: &exit)
            return markExited(record, exit, in: &state)
        }
        if let (snapshot, waiters) = snapshot { deliver(snapshot, waiters) }
    }

    private func finish(_ key: InstanceKey, serial: UInt32, outcome: GuestOutcome, abandonedAfterKill: Bool = false) {
        let result = state.withLock { state -> (InstanceSnapshot, [CheckedContinuation<ExitRecord, any Error>])? in
            guard let record = state.instances[key], record.serial == serial, record.state == .running else { return nil }
            var exit = record.exitRecord(for: outcome)
            if abandonedAfterKill {
                exit.message += "; the guest did not stop within \(configuration.killEscalationTimeout) and its thread was abandoned"
            }
            return markExited(record, exit, in: &state)
        }
        if let (snapshot, waiters) = result { deliver(snapshot, waiters) }
    }

    func markExited(_ record: InstanceRecord, _ exit: ExitRecord, in state: inout State)
        -> (InstanceSnapshot, [CheckedContinuation<ExitRecord, any Error>])
    {
        record.state = .exited
        record.exit = exit
        record.releaseListeners()
        record.deadlineTimer?.cancel()
        record.deadlineTimer = nil
        admission.release()
        state.reservedBytes -= record.memoryCap
        // The guest's linear memory, then what create charged. A thread abandoned after a kill
        // may still run: its limiter refuses any growth from here on.
        record.limiter?.releaseCharge()
        budget.release(record.budgetCharge)
        state.fuelConsumedTotal &+= exit.fuelConsumed
        state.exitsByReason[exit.reason, default: 0] += 1
        let waiters = Array(record.waiters.values)
        record.waiters = [:]
        return (record.snapshot, waiters)
    }

    func deliver(_ snapshot: InstanceSnapshot, _ waiters: [CheckedContinuation<ExitRecord, any Error>]) {
        for waiter in waiters { waiter.resume(returning: snapshot.exit!) }
        emit(.exited(snapshot))
    }

    func emit(_ event: RuntimeEvent) {
        guard let eventHandler else { return }
        lifecycle.async { eventHandler(event) }
    }
}

extension Duration {
    var timeInterval: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
