import Foundation

/// Runtime-wide settings. The defaults work on a node without any configuration file.
public struct RuntimeConfiguration: Sendable {
    /// Most instances alive (created or running) at once; past it, create fails with
    /// "resource exhausted".
    public var maxInstances: Int = 10_000
    /// What the kernel lets this process hold (threads, mappings), read when the configuration
    /// is made; creates past it are refused even under a higher `maxInstances`. nil: no ceiling.
    public var instanceCeiling: InstanceCeiling? = InstanceCeiling.ofThisProcess()
    /// The node memory budget for guests. What counts against it depends on `memoryAdmission`:
    /// under `.committed` (the default) what live instances commit (their linear memory plus a
    /// fixed overhead each), under `.reserveCaps` the sum of their memory caps.
    public var memoryBudgetBytes: UInt64 = RuntimeConfiguration.defaultMemoryBudget()
    /// How instances are admitted against `memoryBudgetBytes`; see `MemoryAdmission`.
    public var memoryAdmission: MemoryAdmission = .committed
    /// Committed admission's charge for an instance beyond its linear memory, on top of its
    /// interpreter stack (which is charged at its full size, since a deep recursion touches all
    /// of it). It covers the guest thread's native stack pages that get touched, the WASI
    /// bridge and its descriptors, the instance's records and the code WasmKit translates into
    /// its store: a sleeping C guest measured about 76 KiB of RSS in all (`wasmlet-bench --only
    /// density`, BENCHMARKS.md), so 256 KiB leaves room for larger programs without keeping a
    /// 24 GiB node from holding 10,000 default guests (768 KiB of overhead + 128 KiB of memory
    /// each is 8.5 GiB of a 12 GiB budget).
    public var instanceOverheadBytes: UInt64 = 256 << 10
    /// The memory cap of an instance whose spec sets none.
    public var defaultMemoryCapBytes: UInt64 = 128 << 20
    /// The interpreter stack of an instance whose spec sets none (WasmKit's default).
    public var defaultStackBytes: UInt64 = 512 << 10
    /// Modules over this size are refused.
    public var maxModuleBytes: Int = 64 << 20
    /// Bounds on the parsed-module cache.
    public var moduleCacheEntries: Int = 256
    public var moduleCacheBytes: Int = 1 << 30
    /// Idle, already translated instances kept per module for reuse (0 disables reuse). Each
    /// costs its linear memory and translated code; see `ModuleAnalysis` for when a module's
    /// instances qualify and why reuse is invisible to the guest.
    public var warmInstancesPerModule: Int = 8
    /// A guest still running after this much wall-clock time, and runnable (computing) for most
    /// of it rather than blocked in host calls, is moved to a lower scheduling priority (nice
    /// `longRunningNice`), so short guests started beside CPU-bound ones finish quickly; it is
    /// looked at again over longer windows (at most 2 s), and gets its priority back while it
    /// mostly waits (a server between requests). nil disables it.
    public var demoteLongRunningAfter: Duration? = .milliseconds(50)
    public var longRunningNice: Int32 = 10
    /// A service's request may first run right on the event loop that read it, for at most this
    /// much fuel, on a warm instance and without waiting (see `ServiceRuns.run`): a hello then
    /// costs no hand-over to a guest thread and back, which were most of its latency. A run that
    /// outgrows it is thrown away and run again on a guest thread; services with preopens never
    /// run this way (a thrown-away run must have had no effect). 100,000 fuel is at most about
    /// 0.3 ms of the loop's time (shared/docs/wasmkit-0.4.2.md: 1e6 fuel ~ 3 ms). nil disables it.
    public var requestSliceFuel: UInt64? = 100_000
    /// How long a start waits for a reader to open a stdout/stderr FIFO.
    public var fifoOpenTimeout: Duration = .seconds(10)
    /// If a kill has not stopped a guest after this long (a host call that ignores the kill, or
    /// the translation of one huge function), the instance is reported exited anyway and its
    /// thread abandoned; see `GuestInterrupter`.
    public var killEscalationTimeout: Duration = .seconds(2)
    /// Open connections per instance when its spec sets no `maxConnections`.
    public var defaultMaxConnections: UInt32 = 1024

    public init() {}

    /// Half of physical memory: the rest is the node's, kubelet's and the daemon's own.
    public static func defaultMemoryBudget() -> UInt64 {
        ProcessInfo.processInfo.physicalMemory / 2
    }
}

/// A point-in-time view of one instance, safe to hand to any thread.
public struct InstanceSnapshot: Sendable {
    public enum State: String, Sendable, Codable { case created, running, exited }

    public var key: InstanceKey
    public var labels: [String: String]
    public var moduleDigest: String
    public var state: State
    public var createdAt: Date
    public var startedAt: Date?
    public var limits: InstanceLimits
    /// The effective memory cap (reserved against the node budget only under reserve-caps
    /// admission).
    public var memoryCapBytes: UInt64
    /// A small number stable for the instance's life, unique in this process (for pid fields).
    public var serial: UInt32
    public var exit: ExitRecord?
    public var spec: InstanceSpec
    /// The instance's listeners as bound at create, in the spec's order.
    public var listeners: [BoundListener] = []
    /// A running service's numbers (nil for other instances, and once a service has exited).
    public var serving: ServingStatistics?
}

/// One instance of ``WasmletRuntime/list(namespace:labels:known:)``.
public struct ListedInstance: Sendable {
    public var key: InstanceKey
    public var serial: UInt32
    public var state: InstanceSnapshot.State
    /// Nil when the caller said it knows this (serial, state) already.
    public var snapshot: InstanceSnapshot?
}

/// What one instance uses (``WasmletRuntime/usage(_:)``).
public struct InstanceUsage: Sendable, Equatable {
    /// Linear memory now (wasm memory only grows, so also the peak so far).
    public var memoryBytes: UInt64
    public var peakMemoryBytes: UInt64
    public var memoryCapBytes: UInt64
    /// CPU time of the guest's thread (user + system).
    public var cpuTimeNanoseconds: UInt64
    /// Fuel burnt so far (metering is always on).
    public var fuelConsumed: UInt64
}

/// One instance's usage in ``WasmletRuntime/usageReport(limit:)``.
public struct InstanceUsageEntry: Sendable, Equatable {
    public var key: InstanceKey
    public var state: InstanceSnapshot.State
    public var usage: InstanceUsage
}

/// Runtime-wide counters.
public struct RuntimeStatistics: Sendable {
    public var created: Int
    public var running: Int
    public var exited: Int
    /// The sum of the memory caps of live (created or running) instances. Reserved against the
    /// budget under reserve-caps admission; under committed admission it may exceed the budget.
    public var memoryReservedBytes: UInt64
    /// What counts against the budget now: under committed admission the live instances'
    /// overhead plus the running guests' linear memory; under reserve-caps the sum of caps.
    public var memoryChargedBytes: UInt64
    public var memoryBudgetBytes: UInt64
    public var memoryAdmission: MemoryAdmission
    /// Growths and instantiations refused because the node budget was exhausted (committed
    /// admission), since the runtime started. Creates refused for the budget are not counted.
    public var memoryBudgetDenials: UInt64
    public var moduleCacheEntries: Int
    public var moduleCacheBytes: Int
    public var moduleCacheHits: UInt64
    public var moduleCacheMisses: UInt64
    public var fuelConsumedTotal: UInt64
    public var exitsByReason: [ExitReason: UInt64]
    /// Translated instances waiting to be reused.
    public var warmInstancesIdle: Int
    /// Linear memory of the running guests now (the sum of their memories' sizes).
    public var linearMemoryBytes: UInt64
    /// Running guests waiting inside a blocking WASI call (sleep, stdio on a pipe).
    public var guestsBlockedInHostCalls: Int
    /// Services' per-request runs going on now (not instance records; see RequestRuns.swift).
    public var requestRunsInProgress: Int = 0
    /// Per-request runs tried first on their connection's event loop, since the runtime
    /// started: answered there (kept), or run again on a guest thread (outgrown).
    public var requestSlicesKept: UInt64 = 0
    public var requestSlicesOutgrown: UInt64 = 0
}

/// What the runtime tells its embedder (the daemon persists these), in order per instance, on
/// the runtime's lifecycle queue.
public enum RuntimeEvent: Sendable {
    case created(InstanceSnapshot)
    case started(InstanceSnapshot)
    case exited(InstanceSnapshot)
    case deleted(InstanceKey)
}
