import ArgumentParser

/// The command-line flags of `wasmletd`. Every flag is optional: a flag overrides the same
/// setting from the configuration file, which overrides the built-in default. Keeping the flags
/// apart from `DaemonConfiguration` lets SIGHUP re-read the file and re-apply the same flags on
/// top, so a reload never undoes what the operator put on the command line.
public struct DaemonOptions: ParsableArguments, Sendable {
    @Option(name: .long, help: ArgumentHelp("TOML configuration file.", valueName: "file"))
    public var config: String?

    @Option(name: .long, help: ArgumentHelp("Unix socket to serve the API on.", valueName: "path"))
    public var socket: String?

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Directory for durable instance records.", valueName: "dir"))
    public var stateDir: String?

    @Option(
        name: .long,
        help: ArgumentHelp("Group allowed to use the socket (mode 0660, owner root:<group>).", valueName: "name"))
    public var group: String?

    @Option(
        name: .customLong("metrics-address"),
        help: ArgumentHelp("Address of the HTTP endpoint for /metrics, /healthz and /readyz (default 127.0.0.1:9464).", valueName: "host:port"))
    public var metricsAddress: String?

    @Flag(
        name: .customLong("metrics-per-instance"), inversion: .prefixedNo,
        help: ArgumentHelp("Export metric series per instance (labels namespace, id): memory, fuel, CPU time (default off)."))
    public var metricsPerInstance: Bool?

    @Option(
        name: .customLong("metrics-per-instance-limit"),
        help: ArgumentHelp(
            "Most instances with per-instance series; live ones first, oldest first (default 500).", valueName: "n"))
    public var metricsPerInstanceLimit: Int?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    public var logLevel: String?

    @Option(
        name: .customLong("shutdown-grace"),
        help: ArgumentHelp(
            "How long running instances get on SIGTERM before they are killed, with a unit: 10s, 500ms, 0 (default 10s).",
            valueName: "duration"))
    public var shutdownGrace: String?

    @Option(
        name: .customLong("http-poll"),
        help: ArgumentHelp(
            "How long an HTTP event loop keeps polling after an answer before it sleeps, with a unit: 100us, 0 (never); at most 10ms (default 100us).",
            valueName: "duration"))
    public var httpPoll: String?

    @Option(name: .customLong("max-instances"), help: ArgumentHelp("Most live (created or running) instances.", valueName: "n"))
    public var maxInstances: Int?

    @Option(
        name: .customLong("memory-budget"),
        help: ArgumentHelp(
            "Node memory budget for guests: bytes or K, M, G, T (powers of 1024; also KiB, MiB, ...), e.g. 8GiB (default: half of RAM).",
            valueName: "size"))
    public var memoryBudget: String?

    @Option(
        name: .customLong("memory-admission"),
        help: ArgumentHelp(
            "What counts against the memory budget: committed (linear memory guests commit, plus a fixed overhead each; the default) or reserve-caps (each instance's whole cap, reserved at create).",
            valueName: "mode"))
    public var memoryAdmission: String?

    @Option(
        name: .customLong("default-memory"),
        help: ArgumentHelp("Memory cap of an instance that sets none, e.g. 128MiB (units as --memory-budget).", valueName: "size"))
    public var defaultMemory: String?

    @Option(
        name: .customLong("status-interval"),
        help: ArgumentHelp("Time between STATUS= updates to systemd, with a unit: 5s, 200ms (default 5s).", valueName: "duration"))
    public var statusInterval: String?

    public init() {}
}
