import Prometheus
import Synchronization

/// Runtime-wide numbers the daemon reads at scrape time (from `RuntimeStatistics`); this
/// library stays free of the engine.
public struct RuntimeNumbers: Sendable {
    public var instancesByState: [String: Int]
    /// The sum of the memory caps of live instances.
    public var memoryReservedBytes: UInt64
    public var memoryBudgetBytes: UInt64
    /// What counts against the budget now (depends on the admission mode).
    public var memoryChargedBytes: UInt64
    /// Growths and instantiations the node budget refused, since the runtime started.
    public var memoryBudgetDenials: UInt64
    public var moduleCacheEntries: Int
    public var moduleCacheBytes: Int
    public var moduleCacheHits: UInt64
    public var moduleCacheMisses: UInt64
    public var fuelConsumedTotal: UInt64
    public var warmInstancesIdle: Int
    /// Linear memory of the running guests now.
    public var linearMemoryBytes: UInt64
    public var guestsBlockedInHostCalls: Int
    /// HTTP requests run first on their connection's event loop: answered there, or outgrown.
    public var requestSlicesKept: UInt64
    public var requestSlicesOutgrown: UInt64
    /// HTTP requests read while their event loop polled after an answer, and the time the
    /// loops spent polling.
    public var httpPollCaughtRequests: UInt64 = 0
    public var httpPollSeconds: Double = 0
    /// The per-instance series (nil: switched off) and how many instances the limit left out.
    public var perInstance: [InstanceNumbers]?
    public var perInstanceOmitted: Int

    public init(
        instancesByState: [String: Int] = [:], memoryReservedBytes: UInt64 = 0, memoryBudgetBytes: UInt64 = 0,
        moduleCacheEntries: Int = 0, moduleCacheBytes: Int = 0, moduleCacheHits: UInt64 = 0,
        moduleCacheMisses: UInt64 = 0, fuelConsumedTotal: UInt64 = 0, warmInstancesIdle: Int = 0,
        linearMemoryBytes: UInt64 = 0, guestsBlockedInHostCalls: Int = 0, perInstance: [InstanceNumbers]? = nil,
        perInstanceOmitted: Int = 0, memoryChargedBytes: UInt64 = 0, memoryBudgetDenials: UInt64 = 0,
        requestSlicesKept: UInt64 = 0, requestSlicesOutgrown: UInt64 = 0
    ) {
        self.requestSlicesKept = requestSlicesKept
        self.requestSlicesOutgrown = requestSlicesOutgrown
        self.memoryChargedBytes = memoryChargedBytes
        self.memoryBudgetDenials = memoryBudgetDenials
        self.linearMemoryBytes = linearMemoryBytes
        self.guestsBlockedInHostCalls = guestsBlockedInHostCalls
        self.perInstance = perInstance
        self.perInstanceOmitted = perInstanceOmitted
        self.instancesByState = instancesByState
        self.memoryReservedBytes = memoryReservedBytes
        self.memoryBudgetBytes = memoryBudgetBytes
        self.moduleCacheEntries = moduleCacheEntries
        self.moduleCacheBytes = moduleCacheBytes
        self.moduleCacheHits = moduleCacheHits
        self.moduleCacheMisses = moduleCacheMisses
        self.fuelConsumedTotal = fuelConsumedTotal
        self.warmInstancesIdle = warmInstancesIdle
    }
}

/// A Prometheus counter fed from a cumulative total kept elsewhere: adds the difference.
final class CumulativeCounter: Sendable {
    private let counter: Counter
    private let last = Mutex<Double>(0)

    init(_ counter: Counter) { self.counter = counter }

    func update(total: Double) {
        let delta = last.withLock { last -> Double in
            guard total > last else { return 0 }
            defer { last = total }
            return total - last
        }
        if delta > 0 { counter.increment(by: delta) }
    }
}

/// wasmletd's metrics, in a `PrometheusCollectorRegistry` (swift-prometheus does the
/// exposition). Events (starts, exits, API calls) are recorded as they happen; runtime-wide
/// gauges and cumulative totals are read from `collect` at each scrape.
public final class WasmletMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let collect: @Sendable () -> RuntimeNumbers

    private let states: [String]
    private let instances: [String: Gauge]
    private let starts: Counter
    private let exits: [String: Counter]
    private let exitsOther: Counter
    private let runDuration: ValueHistogram
    private let instantiateDuration: ValueHistogram
    private let killLatency: ValueHistogram
    private let fuel: CumulativeCounter
    private let slicesKept: CumulativeCounter
    private let slicesOutgrown: CumulativeCounter
    private let pollCaught: CumulativeCounter
    private let pollSeconds: CumulativeCounter
    private let memoryReserved: Gauge
    private let memoryBudget: Gauge
    private let memoryCharged: Gauge
    private let budgetDenials: CumulativeCounter
    private let cacheEntries: Gauge
    private let cacheBytes: Gauge
    private let cacheHits: CumulativeCounter
    private let cacheMisses: CumulativeCounter
    private let guestsRunning: Gauge
    private let guestsBlocked: Gauge
    private let linearMemory: Gauge
    private let admission: [String: Gauge]
    private let warmIdle: Gauge
    private let apiRequests = Mutex<[String: Counter]>([:])
    private let apiLatency = Mutex<[String: ValueHistogram]>([:])
    /// The HTTP trigger's series, made on first use per service (and status).
    private let httpRequests = Mutex<[String: Counter]>([:])
    private let httpErrors = Mutex<[String: Counter]>([:])
    private let httpLatency = Mutex<[String: ValueHistogram]>([:])
    private let httpInFlight = Mutex<[String: Gauge]>([:])
    private let httpQueued = Mutex<[String: Gauge]>([:])
    private let process: ProcessMetrics

    static let durationBuckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
    static let latencyBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// A reused instance is ready in about 0.1 ms, a fresh one in about 1 ms.
    static let instantiateBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
    ]
    /// The requests the admission gauge counts.
    public static let admissionMethods = ["Create", "Start"]

    /// - Parameters:
    ///   - states: every instance state, so each has a series from the start.
    ///   - exitReasons: every exit reason, likewise.
    ///   - collect: runtime-wide numbers, read at each scrape.
    public init(
        states: [String], exitReasons: [String], registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        collect: @escaping @Sendable () -> RuntimeNumbers
    ) {
        self.registry = registry
        self.collect = collect
        self.states = states
        func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "wasmlet", metricName: name, unitName: unit, helpText: help)
        }
        var instances: [String: Gauge] = [:]
        for state in states {
            instances[state] = registry.makeGauge(
                descriptor: d(
                    "instances", "",
                    "Instances the daemon knows, by state (exited includes those recovered from an earlier daemon's records, until they are deleted)."
                ),
                labels: [("state", state)])
        }
        self.instances = instances
        starts = registry.makeCounter(descriptor: d("instance_starts", "total", "Instances started."))
        var exits: [String: Counter] = [:]
        let exitHelp = "Instances that exited, by exit reason."
        for reason in exitReasons {
            exits[reason] = registry.makeCounter(descriptor: d("instance_exits", "total", exitHelp), labels: [("reason", reason)])
        }
        self.exits = exits
        exitsOther = registry.makeCounter(descriptor: d("instance_exits", "total", exitHelp), labels: [("reason", "other")])
        runDuration = registry.makeValueHistogram(
            descriptor: d("instance_run_duration", "seconds", "Time from start to exit of instances that ran."),
            buckets: Self.durationBuckets)
        instantiateDuration = registry.makeValueHistogram(
            descriptor: d(
                "instance_instantiate_duration", "seconds",
                "Time from a guest thread's start to its entry point (_start) being called: WASI setup plus instantiation, or the reset of a reused instance."
            ),
            buckets: Self.instantiateBuckets)
        killLatency = registry.makeValueHistogram(
            descriptor: d("kill_latency", "seconds", "Time from a kill request to the instance's exit."),
            buckets: Self.latencyBuckets)
        fuel = CumulativeCounter(registry.makeCounter(descriptor: d("fuel_consumed", "total", "Fuel units consumed by all guests.")))
        let sliceHelp =
            "HTTP requests run first on their connection's event loop, for a slice of fuel: answered there (kept), or thrown away unseen and run again on a guest thread (outgrown)."
        slicesKept = CumulativeCounter(registry.makeCounter(descriptor: d("http_request_slices", "total", sliceHelp), labels: [("result", "kept")]))
        slicesOutgrown = CumulativeCounter(
            registry.makeCounter(descriptor: d("http_request_slices", "total", sliceHelp), labels: [("result", "outgrown")]))
        pollCaught = CumulativeCounter(
            registry.makeCounter(
                descriptor: d(
                    "http_poll_caught_requests", "total",
                    "HTTP requests whose first bytes came while their event loop was polling after an answer, rather than asleep: each saved a wake-up."
                )))
        pollSeconds = CumulativeCounter(
            registry.makeCounter(
                descriptor: d(
                    "http_poll", "seconds_total",
                    "Time HTTP event loops spent polling after answers instead of sleeping (http.poll): at most the CPU it cost."
                )))
        memoryReserved = registry.makeGauge(
            descriptor: d(
                "memory_caps_reserved", "bytes",
                "Sum of the memory caps of live instances. Charged against the node budget only when memory_admission is reserve-caps; under committed admission caps may add up to more than the budget."
            ))
        memoryBudget = registry.makeGauge(descriptor: d("memory_budget", "bytes", "The node memory budget for guests."))
        memoryCharged = registry.makeGauge(
            descriptor: d(
                "memory_charged", "bytes",
                "Memory counted against the node budget: under committed admission, each live instance's fixed overhead plus the running guests' linear memory; under reserve-caps admission, the sum of the memory caps of live instances."
            ))
        budgetDenials = CumulativeCounter(
            registry.makeCounter(
                descriptor: d(
                    "memory_budget_denials", "total",
                    "memory.grow calls and instantiations refused because the node memory budget was exhausted (committed admission); the guest saw an allocation failure."
                )))
        cacheEntries = registry.makeGauge(descriptor: d("module_cache_entries", "", "Compiled modules in the module cache."))
        cacheBytes = registry.makeGauge(descriptor: d("module_cache_size", "bytes", "Size of the modules in the module cache."))
        cacheHits = CumulativeCounter(registry.makeCounter(descriptor: d("module_cache_hits", "total", "Module cache lookups that found the module.")))
        cacheMisses = CumulativeCounter(registry.makeCounter(descriptor: d("module_cache_misses", "total", "Module cache lookups that had to load the module.")))
        guestsRunning = registry.makeGauge(descriptor: d("guests_running", "", "Guests currently running."))
        guestsBlocked = registry.makeGauge(
            descriptor: d(
                "guests_blocked_in_host_calls", "",
                "Running guests waiting inside a blocking WASI call (poll_oneoff sleep, read or write on pipe-like stdio)."))
        linearMemory = registry.makeGauge(
            descriptor: d("linear_memory_in_use", "bytes", "Linear memory of the running guests (the sum of their memory sizes)."))
        var admission: [String: Gauge] = [:]
        for method in Self.admissionMethods {
            admission[method] = registry.makeGauge(
                descriptor: d(
                    "admission_requests_in_flight", "",
                    "Create and Start requests being served. Admission has no queue (a request is admitted or refused at once), so this is the admission backlog: requests loading a module or writing a record."
                ),
                labels: [("method", method)])
        }
        self.admission = admission
        warmIdle = registry.makeGauge(descriptor: d("warm_instances_idle", "", "Translated instances waiting to be reused."))
        process = ProcessMetrics(registry: registry)
    }

    // MARK: Events

    public func instanceStarted() { starts.increment() }

    /// - Parameter runSeconds: start to exit, nil if the instance never ran.
    public func instanceExited(reason: String, runSeconds: Double?) {
        (exits[reason] ?? exitsOther).increment()
        if let runSeconds, runSeconds >= 0 { runDuration.record(runSeconds) }
    }

    public func recordInstantiate(seconds: Double) { instantiateDuration.record(max(0, seconds)) }

    /// A Create or Start request began (`admissionEnded` when it is answered); other methods
    /// are ignored.
    public func admissionBegan(method: String) { admission[method]?.increment() }
    public func admissionEnded(method: String) { admission[method]?.decrement() }

    public func recordKillLatency(seconds: Double) { killLatency.record(max(0, seconds)) }

    /// One API request: its method ("Create"), status code name ("OK", "NOT_FOUND") and latency.
    public func recordRequest(method: String, code: String, seconds: Double) {
        let key = method + "\u{0}" + code
        let counter = apiRequests.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "wasmlet", metricName: "api_requests", unitName: "total",
                    helpText: "wasmlet.v1 API requests, by method and status code."),
                labels: [("method", method), ("code", code)])
            counters[key] = counter
            return counter
        }
        counter.increment()
        let histogram = apiLatency.withLock { histograms in
            if let histogram = histograms[method] { return histogram }
            let histogram = registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(
                    namespace: "wasmlet", metricName: "api_request_duration", unitName: "seconds",
                    helpText: "wasmlet.v1 API request latency, by method."),
                labels: [("method", method)], buckets: Self.latencyBuckets)
            histograms[method] = histogram
            return histogram
        }
        histogram.record(max(0, seconds))
    }

    // MARK: HTTP trigger

    /// One request a service answered: by status, with its latency, and by failure reason
    /// when the answer was the trigger's own (a 5xx or 4xx naming the reason).
    public func recordHTTPRequest(service: String, status: Int, seconds: Double, failure: String?) {
        let code = String(status)
        series(httpRequests, key: service + "\u{0}" + code) {
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "wasmlet", metricName: "http_requests", unitName: "total",
                    helpText: "Requests the HTTP trigger answered, by service (namespace/id) and status code."),
                labels: [("service", service), ("code", code)])
        }.increment()
        if let failure {
            series(httpErrors, key: service + "\u{0}" + failure) {
                registry.makeCounter(
                    descriptor: MetricNameDescriptor(
                        namespace: "wasmlet", metricName: "http_request_errors", unitName: "total",
                        helpText: "Requests the HTTP trigger answered itself, not the guest, by service and reason."),
                    labels: [("service", service), ("reason", failure)])
            }.increment()
        }
        series(httpLatency, key: service) {
            registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(
                    namespace: "wasmlet", metricName: "http_request_duration", unitName: "seconds",
                    helpText: "From a request read whole to its answer (queue wait and the guest's run), by service."),
                labels: [("service", service)], buckets: Self.latencyBuckets)
        }.record(max(0, seconds))
    }

    public func changeHTTPInFlight(service: String, by delta: Int) {
        changeServiceGauge(httpInFlight, "http_requests_in_flight", "Requests whose guest runs now, by service.", service, delta)
    }

    public func changeHTTPQueueDepth(service: String, by delta: Int) {
        changeServiceGauge(
            httpQueued, "http_queue_depth", "Requests waiting for one of their service's concurrency slots, by service.", service, delta)
    }

    /// Drops every series of a stopped service, so a node that starts and stops services all
    /// day keeps only the running ones' series.
    public func forgetHTTPService(_ service: String) {
        func drop<Metric>(_ table: borrowing Mutex<[String: Metric]>, _ unregister: (Metric) -> Void) {
            let gone = table.withLock { table -> [Metric] in
                let keys = table.keys.filter { $0 == service || $0.hasPrefix(service + "\u{0}") }
                return keys.compactMap { table.removeValue(forKey: $0) }
            }
            gone.forEach(unregister)
        }
        drop(httpRequests) { registry.unregisterCounter($0) }
        drop(httpErrors) { registry.unregisterCounter($0) }
        drop(httpLatency) { registry.unregisterValueHistogram($0) }
        drop(httpInFlight) { registry.unregisterGauge($0) }
        drop(httpQueued) { registry.unregisterGauge($0) }
    }

    private func changeServiceGauge(_ table: borrowing Mutex<[String: Gauge]>, _ name: String, _ help: String, _ service: String, _ delta: Int) {
        series(table, key: service) {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(namespace: "wasmlet", metricName: name, unitName: "", helpText: help),
                labels: [("service", service)])
        }.increment(by: Double(delta))
    }

    private func series<Metric>(_ table: borrowing Mutex<[String: Metric]>, key: String, make: () -> Metric) -> Metric {
        table.withLock { table in
            if let metric = table[key] { return metric }
            let metric = make()
            table[key] = metric
            return metric
        }
    }

    // MARK: Scrape

    /// Refreshes the gauges from `collect` and /proc, then renders the text format (0.0.4).
    public func scrape() -> [UInt8] {
        let numbers = collect()
        for state in states { instances[state]?.set(Double(numbers.instancesByState[state] ?? 0)) }
        guestsRunning.set(Double(numbers.instancesByState["running"] ?? 0))
        fuel.update(total: Double(numbers.fuelConsumedTotal))
        slicesKept.update(total: Double(numbers.requestSlicesKept))
        slicesOutgrown.update(total: Double(numbers.requestSlicesOutgrown))
        pollCaught.update(total: Double(numbers.httpPollCaughtRequests))
        pollSeconds.update(total: numbers.httpPollSeconds)
        memoryReserved.set(Double(numbers.memoryReservedBytes))
        memoryBudget.set(Double(numbers.memoryBudgetBytes))
        memoryCharged.set(Double(numbers.memoryChargedBytes))
        budgetDenials.update(total: Double(numbers.memoryBudgetDenials))
        cacheEntries.set(Double(numbers.moduleCacheEntries))
        cacheBytes.set(Double(numbers.moduleCacheBytes))
        cacheHits.update(total: Double(numbers.moduleCacheHits))
        cacheMisses.update(total: Double(numbers.moduleCacheMisses))
        warmIdle.set(Double(numbers.warmInstancesIdle))
        linearMemory.set(Double(numbers.linearMemoryBytes))
        guestsBlocked.set(Double(numbers.guestsBlockedInHostCalls))
        process.update()
        var buffer = registry.emitToBuffer()
        if let instances = numbers.perInstance {
            PerInstanceSeries.render(instances, omitted: numbers.perInstanceOmitted, into: &buffer)
        }
        return buffer
    }
}
