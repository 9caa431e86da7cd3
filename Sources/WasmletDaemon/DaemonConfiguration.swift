import Foundation
import Glibc
import Logging
import WasmletConventions
import WasmletRuntime
import WasmletService

/// Everything the daemon runs with, resolved from (highest wins) command-line flags, the TOML
/// file, and built-in defaults that work without any file.
public struct DaemonConfiguration: Sendable, Equatable {
    public var configFile: String?
    public var socketPath: String
    public var stateDirectory: String
    /// The socket's group (mode 0660 root:group) and the group whose members may call; nil: root
    /// and the daemon's own user only.
    public var group: String?
    /// Where /metrics, /healthz and /readyz are served (nil: the loopback default).
    public var metricsAddress: String?
    /// Per-instance metric series (`[metrics] per_instance`), and at most how many instances
    /// get them (`per_instance_limit`).
    public var metricsPerInstance = false
    public var metricsPerInstanceLimit = 500
    public var logLevel: Logger.Level
    public var shutdownGrace: Duration
    public var statusInterval: Duration
    public var maxInstances: Int?
    public var memoryBudgetBytes: UInt64?
    /// `[limits] memory_admission` / `--memory-admission`; nil keeps the runtime's default
    /// (committed).
    public var memoryAdmission: MemoryAdmission?
    public var defaultMemoryCapBytes: UInt64?
    /// `[http] poll` / `--http-poll`: how long an HTTP event loop polls its sockets after an
    /// answer before it sleeps (`AnswerPolling`); zero never.
    public var httpPoll: Duration = Self.defaultHTTPPoll

    /// A keep-alive client's next request comes some tens of microseconds after an answer: on
    /// this project's VMs 50 µs caught too few of wrk's (`BENCHMARKS.md`).
    public static let defaultHTTPPoll = Duration.microseconds(100)
    /// Longer buys no latency and costs CPU on every answer that nothing follows.
    static let longestHTTPPoll = Duration.milliseconds(10)

    /// Built-in defaults for the user the daemon runs as. Root gets the system locations the
    /// systemd units use; anyone else gets per-user ones, so a developer can run `wasmletd` with
    /// no arguments and no privileges.
    public static func defaults(
        uid: uid_t = getuid(), environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> DaemonConfiguration {
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let socket = WasmletSocketPath.daemonDefault(isRoot: uid == 0, environment: environment, homeDirectory: home)
        let state: String
        if uid == 0 {
            state = "/var/lib/wasmlet"
        } else if let stateHome = environment["XDG_STATE_HOME"], !stateHome.isEmpty {
            state = stateHome + "/wasmlet"
        } else {
            state = home + "/.wasmlet/state"
        }
        return DaemonConfiguration(
            configFile: nil, socketPath: socket, stateDirectory: state, group: nil, metricsAddress: nil,
            logLevel: .info, shutdownGrace: .seconds(10), statusInterval: .seconds(5), maxInstances: nil,
            memoryBudgetBytes: nil, memoryAdmission: nil, defaultMemoryCapBytes: nil)
    }

    /// Defaults, then the file named by `--config` (if any), then the flags. The daemon passes a
    /// `parserChild`, which parses the file's text in a child process first.
    static func resolve(
        options: DaemonOptions, uid: uid_t = getuid(),
        environment: [String: String] = ProcessInfo.processInfo.environment,
        parserChild: ConfigurationParserChild? = nil
    ) throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = defaults(uid: uid, environment: environment)
        if let path = options.config {
            configuration.configFile = path
            try ConfigurationFile.load(path: path, parserChild: parserChild).apply(to: &configuration)
        }
        try configuration.apply(options)
        try configuration.validate()
        return configuration
    }

    /// The settings, by their configuration-file keys, that differ in `next` but that a running
    /// daemon cannot change (a SIGHUP reload applies only log_level, shutdown_grace and
    /// status_interval).
    func settingsNeedingRestart(toApply next: DaemonConfiguration) -> [String] {
        var keys: [String] = []
        if next.socketPath != socketPath { keys.append("socket") }
        if next.stateDirectory != stateDirectory { keys.append("state_dir") }
        if next.group != group { keys.append("group") }
        if next.metricsAddress != metricsAddress { keys.append("metrics_address") }
        if next.metricsPerInstance != metricsPerInstance { keys.append("metrics.per_instance") }
        if next.metricsPerInstanceLimit != metricsPerInstanceLimit { keys.append("metrics.per_instance_limit") }
        if next.maxInstances != maxInstances { keys.append("limits.max_instances") }
        if next.memoryBudgetBytes != memoryBudgetBytes { keys.append("limits.memory_budget") }
        if next.memoryAdmission != memoryAdmission { keys.append("limits.memory_admission") }
        if next.defaultMemoryCapBytes != defaultMemoryCapBytes { keys.append("limits.default_memory") }
        if next.httpPoll != httpPoll { keys.append("http.poll") }
        return keys
    }

    /// The metrics settings this configuration implies.
    var metricsSettings: MetricsSettings {
        MetricsSettings(perInstance: metricsPerInstance, perInstanceLimit: metricsPerInstanceLimit)
    }

    /// The runtime settings this configuration implies.
    public var runtimeConfiguration: RuntimeSettings {
        RuntimeSettings(
            maxInstances: maxInstances, memoryBudgetBytes: memoryBudgetBytes, memoryAdmission: memoryAdmission,
            defaultMemoryCapBytes: defaultMemoryCapBytes)
    }

    private mutating func apply(_ options: DaemonOptions) throws(ConfigurationError) {
        if let value = options.socket { socketPath = value }
        if let value = options.stateDir { stateDirectory = value }
        if let value = options.group { group = value.isEmpty ? nil : value }
        if let value = options.metricsAddress { metricsAddress = value }
        if let value = options.metricsPerInstance { metricsPerInstance = value }
        if let value = options.metricsPerInstanceLimit {
            guard value >= 0 else { throw .flag("--metrics-per-instance-limit", "must be at least 0") }
            metricsPerInstanceLimit = value
        }
        if let value = options.logLevel {
            guard let level = Logger.Level(rawValue: value.lowercased()) else {
                throw .flag("--log-level", "unknown level \"\(value)\"; use one of \(Self.levelNames)")
            }
            logLevel = level
        }
        if let value = options.shutdownGrace {
            do {
                shutdownGrace = try DurationSyntax.parse(value)
            } catch {
                throw .flag("--shutdown-grace", error.message)
            }
        }
        if let value = options.statusInterval {
            do {
                statusInterval = try DurationSyntax.parse(value)
            } catch {
                throw .flag("--status-interval", error.message)
            }
            guard statusInterval > .zero else { throw .flag("--status-interval", "must be more than 0") }
        }
        if let value = options.httpPoll {
            do {
                httpPoll = try DurationSyntax.parse(value)
            } catch {
                throw .flag("--http-poll", error.message)
            }
            guard httpPoll <= Self.longestHTTPPoll else { throw .flag("--http-poll", Self.httpPollTooLong) }
        }
        if let value = options.maxInstances {
            guard value > 0 else { throw .flag("--max-instances", "must be at least 1") }
            maxInstances = value
        }
        if let value = options.memoryBudget {
            do {
                memoryBudgetBytes = try ByteSize.parse(value)
            } catch {
                throw .flag("--memory-budget", error.message)
            }
        }
        if let value = options.memoryAdmission {
            guard let mode = MemoryAdmission(rawValue: value) else {
                throw .flag("--memory-admission", Self.admissionHelp(value))
            }
            memoryAdmission = mode
        }
        if let value = options.defaultMemory {
            do {
                defaultMemoryCapBytes = try ByteSize.parse(value)
            } catch {
                throw .flag("--default-memory", error.message)
            }
        }
    }

    private func validate() throws(ConfigurationError) {
        guard socketPath.hasPrefix("/") else { throw .invalid("socket path \"\(socketPath)\" must be absolute") }
        guard socketPath.utf8.count <= 107 else {
            throw .invalid("socket path \(socketPath) is \(socketPath.utf8.count) bytes; the limit is 107")
        }
        guard stateDirectory.hasPrefix("/") else { throw .invalid("state directory \"\(stateDirectory)\" must be absolute") }
        if let group, GroupLookup.gid(named: group) == nil {
            throw .invalid("group \"\(group)\" does not exist")
        }
        if let metricsAddress {
            guard let colon = metricsAddress.lastIndex(of: ":"), UInt16(metricsAddress[metricsAddress.index(after: colon)...]) != nil
            else { throw .invalid("metrics address \"\(metricsAddress)\" is not HOST:PORT") }
        }
    }

    static let httpPollTooLong = "must be at most 10ms (longer costs CPU and saves no wake-up)"

    static let levelNames = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")

    static func admissionHelp(_ value: String) -> String {
        "unknown memory admission \"\(value)\"; use committed (count what guests commit) or reserve-caps (reserve each cap at create)"
    }
}

/// The runtime limits a configuration sets; nil keeps the runtime's own default.
public struct RuntimeSettings: Sendable, Equatable {
    public var maxInstances: Int?
    public var memoryBudgetBytes: UInt64?
    public var memoryAdmission: MemoryAdmission?
    public var defaultMemoryCapBytes: UInt64?
}

/// A configuration problem, worded for the operator: it names the flag, or the file with the
/// line or key at fault.
public enum ConfigurationError: Error, CustomStringConvertible, Equatable {
    case file(path: String, String)
    case flag(String, String)
    case invalid(String)

    public var description: String {
        switch self {
        case .file(let path, let message): "configuration file \(path): \(message)"
        case .flag(let flag, let message): "\(flag): \(message)"
        case .invalid(let message): "configuration: \(message)"
        }
    }
}
