import Foundation
import Logging
import TOMLKit
import WasmletConventions
import WasmletRuntime

/// The settings a TOML configuration file may carry; every one is optional.
///
/// ```toml
/// socket = "/run/wasmlet/wasmlet.sock"
/// state_dir = "/var/lib/wasmlet"
/// group = "wasmlet"
/// metrics_address = "127.0.0.1:9464"
/// log_level = "info"
/// shutdown_grace = "10s"    # a duration needs its unit: "500ms", "10s", "1m"; or 0
/// status_interval = "5s"
///
/// [metrics]
/// per_instance = false       # series per instance (namespace, id): memory, fuel, CPU time
/// per_instance_limit = 500   # at most this many instances get them
///
/// [http]
/// poll = "100us"             # an HTTP event loop polls this long after an answer; 0: never
///
/// [limits]
/// max_instances = 10000
/// memory_budget = "8GiB"     # or a number of bytes; K, M, G, T are powers of 1024 too
/// memory_admission = "committed"   # or "reserve-caps"
/// default_memory = "128MiB"
/// ```
///
/// Unknown keys are errors rather than ignored: a misspelt limit that silently does nothing is
/// worse than a daemon that refuses to start and names the key.
struct ConfigurationFile: Equatable {
    var socket: String?
    var stateDir: String?
    var group: String?
    var metricsAddress: String?
    var logLevel: Logger.Level?
    var shutdownGrace: Duration?
    var statusInterval: Duration?
    var maxInstances: Int?
    var memoryBudget: UInt64?
    var memoryAdmission: MemoryAdmission?
    var defaultMemory: UInt64?
    var metricsPerInstance: Bool?
    var metricsPerInstanceLimit: Int?
    var httpPoll: Duration?

    /// Reads and parses the file; with `parserChild`, the text is parsed in a child process
    /// first, so that a parser crash refuses the file instead of ending the daemon.
    static func load(path: String, parserChild: ConfigurationParserChild? = nil) throws(ConfigurationError) -> ConfigurationFile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .file(path: path, "cannot read: \((error as NSError).localizedDescription)")
        }
        try parserChild?.check(text, path: path)
        return try parse(text, path: path)
    }

    static func parse(_ text: String, path: String) throws(ConfigurationError) -> ConfigurationFile {
        do {
            try TOMLPreflight.check(text)
        } catch {
            throw .file(path: path, error.message)
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw .file(
                path: path,
                "line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw .file(path: path, "\(error)")
        }
        let reader = Reader(path: path)
        var file = ConfigurationFile()
        let topLevel: Set<String> = [
            "socket", "state_dir", "group", "metrics_address", "log_level", "shutdown_grace", "status_interval",
            "limits", "metrics", "http",
        ]
        try reader.rejectUnknown(table, allowed: topLevel, prefix: "")
        file.socket = try reader.string(table, "socket")
        file.stateDir = try reader.string(table, "state_dir")
        file.group = try reader.string(table, "group")
        file.metricsAddress = try reader.string(table, "metrics_address")
        if let level = try reader.string(table, "log_level") {
            guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
                throw .file(path: path, "key log_level: unknown level \"\(level)\"; use one of \(DaemonConfiguration.levelNames)")
            }
            file.logLevel = parsed
        }
        file.shutdownGrace = try reader.duration(table, "shutdown_grace", allowZero: true)
        file.statusInterval = try reader.duration(table, "status_interval", allowZero: false)
        if let limits = table["limits"] {
            guard let limits = limits.table else { throw .file(path: path, "key limits: expected a table ([limits])") }
            try reader.rejectUnknown(
                limits, allowed: ["max_instances", "memory_budget", "memory_admission", "default_memory"], prefix: "limits.")
            if let value = try reader.integer(limits, "max_instances", prefix: "limits.") {
                guard value > 0 else { throw .file(path: path, "key limits.max_instances: must be at least 1") }
                file.maxInstances = value
            }
            file.memoryBudget = try reader.size(limits, "memory_budget", prefix: "limits.")
            if let mode = try reader.string(limits, "memory_admission", prefix: "limits.") {
                guard let parsed = MemoryAdmission(rawValue: mode) else {
                    throw .file(path: path, "key limits.memory_admission: \(DaemonConfiguration.admissionHelp(mode))")
                }
                file.memoryAdmission = parsed
            }
            file.defaultMemory = try reader.size(limits, "default_memory", prefix: "limits.")
        }
        if let metrics = table["metrics"] {
            guard let metrics = metrics.table else { throw .file(path: path, "key metrics: expected a table ([metrics])") }
            try reader.rejectUnknown(metrics, allowed: ["per_instance", "per_instance_limit"], prefix: "metrics.")
            file.metricsPerInstance = try reader.bool(metrics, "per_instance", prefix: "metrics.")
            if let value = try reader.integer(metrics, "per_instance_limit", prefix: "metrics.") {
                guard value >= 0 else { throw .file(path: path, "key metrics.per_instance_limit: must be at least 0") }
                file.metricsPerInstanceLimit = value
            }
        }
        if let http = table["http"] {
            guard let http = http.table else { throw .file(path: path, "key http: expected a table ([http])") }
            try reader.rejectUnknown(http, allowed: ["poll"], prefix: "http.")
            if let poll = try reader.duration(http, "poll", allowZero: true, prefix: "http.") {
                guard poll <= DaemonConfiguration.longestHTTPPoll else {
                    throw .file(path: path, "key http.poll: \(DaemonConfiguration.httpPollTooLong)")
                }
                file.httpPoll = poll
            }
        }
        return file
    }

    /// Lays the file's settings over `configuration` (flags are applied afterwards).
    func apply(to configuration: inout DaemonConfiguration) {
        if let socket { configuration.socketPath = socket }
        if let stateDir { configuration.stateDirectory = stateDir }
        if let group { configuration.group = group.isEmpty ? nil : group }
        if let metricsAddress { configuration.metricsAddress = metricsAddress }
        if let logLevel { configuration.logLevel = logLevel }
        if let shutdownGrace { configuration.shutdownGrace = shutdownGrace }
        if let statusInterval { configuration.statusInterval = statusInterval }
        if let maxInstances { configuration.maxInstances = maxInstances }
        if let memoryBudget { configuration.memoryBudgetBytes = memoryBudget }
        if let memoryAdmission { configuration.memoryAdmission = memoryAdmission }
        if let defaultMemory { configuration.defaultMemoryCapBytes = defaultMemory }
        if let metricsPerInstance { configuration.metricsPerInstance = metricsPerInstance }
        if let metricsPerInstanceLimit { configuration.metricsPerInstanceLimit = metricsPerInstanceLimit }
        if let httpPoll { configuration.httpPoll = httpPoll }
    }

    /// Typed access that names the key on every mistake.
    private struct Reader {
        let path: String

        func rejectUnknown(_ table: TOMLTable, allowed: Set<String>, prefix: String) throws(ConfigurationError) {
            for key in table.keys where !allowed.contains(key) {
                throw .file(
                    path: path,
                    "unknown key \(prefix)\(key); known keys here: \(allowed.sorted().map { prefix + $0 }.joined(separator: ", "))")
            }
        }

        func string(_ table: TOMLTable, _ key: String, prefix: String = "") throws(ConfigurationError) -> String? {
            guard let value = table[key] else { return nil }
            guard let string = value.string else { throw mismatch(prefix + key, "a string", value) }
            return string
        }

        func bool(_ table: TOMLTable, _ key: String, prefix: String = "") throws(ConfigurationError) -> Bool? {
            guard let value = table[key] else { return nil }
            guard let bool = value.bool else { throw mismatch(prefix + key, "true or false", value) }
            return bool
        }

        func integer(_ table: TOMLTable, _ key: String, prefix: String = "") throws(ConfigurationError) -> Int? {
            guard let value = table[key] else { return nil }
            guard let integer = value.int else { throw mismatch(prefix + key, "an integer", value) }
            return integer
        }

        /// A duration string such as "10s" (`DurationSyntax`); a bare number has no unit and is
        /// refused, except 0.
        func duration(_ table: TOMLTable, _ key: String, allowZero: Bool, prefix: String = "") throws(ConfigurationError) -> Duration? {
            guard let value = table[key] else { return nil }
            let key = prefix + key
            let duration: Duration
            if let string = value.string {
                do {
                    duration = try DurationSyntax.parse(string)
                } catch {
                    throw .file(path: path, "key \(key): \(error.message)")
                }
            } else if value.int == 0 {
                duration = .zero
            } else if let number = value.int.map(String.init) ?? value.double.map({ "\($0)" }) {
                throw .file(path: path, "key \(key): \(number) has no unit; write a string with one, e.g. \"\(number)s\" or \"\(number)ms\"")
            } else {
                throw mismatch(key, "a duration (a string such as \"10s\")", value)
            }
            guard duration > .zero || (allowZero && duration == .zero) else {
                throw .file(path: path, "key \(key): must be more than 0")
            }
            return duration
        }

        func size(_ table: TOMLTable, _ key: String, prefix: String) throws(ConfigurationError) -> UInt64? {
            guard let value = table[key] else { return nil }
            if let integer = value.int {
                guard integer > 0 else { throw .file(path: path, "key \(prefix)\(key): must be more than 0 bytes") }
                return UInt64(integer)
            }
            if let string = value.string {
                do {
                    return try ByteSize.parse(string)
                } catch {
                    throw .file(path: path, "key \(prefix)\(key): \(error.message)")
                }
            }
            throw mismatch(prefix + key, "a size (bytes, or a string such as \"512MiB\")", value)
        }

        private func mismatch(_ key: String, _ expected: String, _ value: any TOMLValueConvertible) -> ConfigurationError {
            .file(path: path, "key \(key): expected \(expected), found \(value.type)")
        }
    }
}
