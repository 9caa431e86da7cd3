import SwiftProtobuf
import WasmletAPI
import WasmletConventions
import WasmletJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Human and JSON renderings of wasmlet.v1 messages, as `wasmletctl` prints them.
public enum InstanceFormatting {
    /// "created", "running", "exited", "unknown".
    public static func stateName(_ state: Wasmlet_V1_State) -> String {
        switch state {
        case .created: "created"
        case .running: "running"
        case .exited: "exited"
        case .unspecified, .UNRECOGNIZED: "unknown"
        }
    }

    /// "exited", "trapped", "out_of_fuel", "deadline_exceeded", "killed", "failed_to_start",
    /// "daemon_restarted", "unknown".
    public static func reasonName(_ reason: Wasmlet_V1_ExitReason) -> String {
        switch reason {
        case .exited: "exited"
        case .trapped: "trapped"
        case .outOfFuel: "out_of_fuel"
        case .deadlineExceeded: "deadline_exceeded"
        case .killed: "killed"
        case .failedToStart: "failed_to_start"
        case .daemonRestarted: "daemon_restarted"
        case .unspecified, .UNRECOGNIZED: "unknown"
        }
    }

    /// The first 12 hex digits of a "sha256:<hex>" digest; "-" when there is none.
    public static func shortDigest(_ digest: String) -> String {
        guard !digest.isEmpty else { return "-" }
        let hex = digest.hasPrefix("sha256:") ? digest.dropFirst("sha256:".count) : Substring(digest)
        return String(hex.prefix(12))
    }

    /// "42s", "5m", "3h", "12d" (kubectl style: seconds below 2 minutes, minutes below 2 hours...).
    public static func age(seconds: Int64) -> String {
        let s = max(0, seconds)
        if s < 120 { return "\(s)s" }
        if s < 2 * 3600 { return "\(s / 60)m" }
        if s < 48 * 3600 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }

    public static let tableHeader = ["NAMESPACE", "ID", "STATE", "EXIT", "MODULE", "AGE"]

    /// The `wasmletctl list` table, sorted by namespace then id, columns aligned with three
    /// spaces between them, one line per instance, ending in a newline. `now` is in Unix seconds.
    /// When any instance is an HTTP service, a last column SERVING shows each service's
    /// addresses and request count.
    public static func table(_ instances: [Wasmlet_V1_Instance], now: Int64) -> String {
        let sorted = sortedByKey(instances)
        let anyService = sorted.contains { $0.hasHTTPTrigger }
        var rows: [[String]] = [anyService ? tableHeader + ["SERVING"] : tableHeader]
        rows.reserveCapacity(sorted.count + 1)
        for instance in sorted {
            var row = [
                instance.namespace,
                instance.id,
                stateName(instance.state),
                instance.hasExit ? String(instance.exit.code) : "-",
                shortDigest(instance.moduleDigest),
                instance.hasCreatedAt ? age(seconds: now - instance.createdAt.seconds) : "-",
            ]
            if anyService { row.append(serving(instance)) }
            rows.append(row)
        }
        return alignedTable(rows)
    }

    /// "127.0.0.1:8080 (12 requests)" for a service, "-" for any other instance.
    static func serving(_ instance: Wasmlet_V1_Instance) -> String {
        guard instance.hasHTTPTrigger else { return "-" }
        let addresses = instance.listeners.map(\.boundAddress).joined(separator: ",")
        let requests = instance.httpStats.requests
        return "\(addresses.isEmpty ? "-" : addresses) (\(requests) request\(requests == 1 ? "" : "s"))"
    }

    /// By namespace then id. The daemon answers List in this order already, so this usually
    /// only checks.
    static func sortedByKey(_ instances: [Wasmlet_V1_Instance]) -> [Wasmlet_V1_Instance] {
        func inOrder(_ a: Wasmlet_V1_Instance, _ b: Wasmlet_V1_Instance) -> Bool { (a.namespace, a.id) < (b.namespace, b.id) }
        for index in instances.indices.dropFirst() where inOrder(instances[index], instances[index - 1]) {
            return instances.sorted(by: inOrder)
        }
        return instances
    }

    /// Rows padded to column width (by character count), three spaces apart; the last column
    /// is not padded.
    public static func alignedTable(_ rows: [[String]]) -> String {
        guard let columns = rows.map(\.count).max(), columns > 0 else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], width(cell)) }
        }
        // Built as UTF-8 bytes: String appends and Character counts were most of the time of
        // `wasmletctl list` with 10,000 instances.
        var out: [UInt8] = []
        out.reserveCapacity(rows.count * (widths.reduce(0, +) + 3 * columns + 1))
        for row in rows {
            for (index, cell) in row.enumerated() {
                out.append(contentsOf: cell.utf8)
                if index < row.count - 1 {
                    out.append(contentsOf: repeatElement(0x20, count: widths[index] - width(cell) + 3))
                }
            }
            out.append(0x0A)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The number of characters, counted cheaply for ASCII text.
    private static func width(_ text: String) -> Int {
        let utf8 = text.utf8
        return utf8.allSatisfy({ $0 < 0x80 }) ? utf8.count : text.count
    }

    /// RFC 3339 UTC with milliseconds, e.g. "2025-01-02T03:04:05.678Z".
    public static func timestamp(_ value: Google_Protobuf_Timestamp) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(24)
        appendTimestamp(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `timestamp(_:)` appended as UTF-8, without a String per call (a list has thousands).
    static func appendTimestamp(_ value: Google_Protobuf_Timestamp, to out: inout [UInt8]) {
        JSONWriter.appendTimestamp(seconds: value.seconds, milliseconds: value.nanos / 1_000_000, to: &out)
    }

    private static func writeTimestamp(_ present: Bool, _ value: Google_Protobuf_Timestamp, to writer: inout JSONWriter) {
        guard present else { return writer.null() }
        writer.timestamp(seconds: value.seconds, milliseconds: value.nanos / 1_000_000)
    }

    /// The exit record as JSON, keys in a fixed order.
    public static func write(_ exit: Wasmlet_V1_ExitRecord, to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("code"); writer.int(Int64(exit.code))
        writer.key("reason"); writer.string(reasonName(exit.reason))
        writer.key("message"); writer.string(exit.message)
        writer.key("signal"); writer.uint(UInt64(exit.signal))
        writer.key("startedAt"); writeTimestamp(exit.hasStartedAt, exit.startedAt, to: &writer)
        writer.key("exitedAt"); writeTimestamp(exit.hasExitedAt, exit.exitedAt, to: &writer)
        writer.key("fuelConsumed"); writer.uint(exit.fuelConsumed)
        writer.key("cpuTimeNs"); writer.uint(exit.cpuTimeNs)
        writer.key("peakMemoryBytes"); writer.uint(exit.peakMemoryBytes)
        writer.key("memoryLimitHit"); writer.bool(exit.memoryLimitHit)
        writer.key("memoryBudgetHit"); writer.bool(exit.memoryBudgetHit)
        writer.endObject()
    }

    /// The instance as JSON, keys in a fixed order (labels sorted by key); absent times and
    /// an absent exit record are null.
    public static func write(_ instance: Wasmlet_V1_Instance, to writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("namespace"); writer.string(instance.namespace)
        writer.key("id"); writer.string(instance.id)
        writer.key("state"); writer.string(stateName(instance.state))
        writer.key("serial"); writer.uint(UInt64(instance.serial))
        writer.key("labels"); writer.sortedStringObject(instance.labels)
        writer.key("moduleDigest"); writer.string(instance.moduleDigest)
        writer.key("modulePath"); writer.string(instance.modulePath)
        writer.key("createdAt"); writeTimestamp(instance.hasCreatedAt, instance.createdAt, to: &writer)
        writer.key("startedAt"); writeTimestamp(instance.hasStartedAt, instance.startedAt, to: &writer)
        let limits = instance.limits
        writer.key("limits")
        writer.beginObject()
        writer.key("memoryBytes"); writer.uint(limits.memoryBytes)
        writer.key("fuel"); writer.uint(limits.fuel)
        writer.key("timeoutMs"); writer.uint(limits.timeoutMs)
        writer.key("stackBytes"); writer.uint(limits.stackBytes)
        if limits.maxConnections != 0 { writer.key("maxConnections"); writer.uint(UInt64(limits.maxConnections)) }
        writer.endObject()
        // Only for instances that have listeners, so other documents keep their shape.
        if !instance.listeners.isEmpty {
            writer.key("listeners")
            writer.beginArray()
            for listener in instance.listeners {
                writer.element()
                writer.beginObject()
                writer.key("requested"); writer.string(ListenAddress(address: listener.requested.address, port: UInt16(clamping: listener.requested.port)).description)
                writer.key("boundAddress"); writer.string(listener.boundAddress)
                writer.key("boundPort"); writer.uint(UInt64(listener.boundPort))
                writer.key("guestFd"); writer.uint(UInt64(listener.guestFd))
                writer.endObject()
            }
            writer.endArray()
        }
        // Only for services: their trigger's settings (the daemon's, defaults filled in) and
        // their request counts.
        if instance.hasHTTPTrigger {
            let trigger = instance.httpTrigger
            writer.key("httpTrigger")
            writer.beginObject()
            writer.key("maxConcurrency"); writer.uint(UInt64(trigger.maxConcurrency))
            writer.key("queueLength"); writer.uint(UInt64(trigger.queueLength))
            writer.key("queueTimeoutMs"); writer.uint(trigger.queueTimeoutMs)
            writer.key("maxBodyBytes"); writer.uint(trigger.maxBodyBytes)
            writer.key("maxHeaderBytes"); writer.uint(UInt64(trigger.maxHeaderBytes))
            writer.key("maxResponseBytes"); writer.uint(trigger.maxResponseBytes)
            writer.key("requestReadTimeoutMs"); writer.uint(trigger.requestReadTimeoutMs)
            writer.endObject()
            let stats = instance.httpStats
            writer.key("httpStats")
            writer.beginObject()
            writer.key("requests"); writer.uint(stats.requests)
            writer.key("running"); writer.uint(UInt64(stats.running))
            writer.key("queued"); writer.uint(UInt64(stats.queued))
            writer.endObject()
        }
        writer.key("exit")
        if instance.hasExit { write(instance.exit, to: &writer) } else { writer.null() }
        writer.endObject()
    }

    /// `wasmletctl inspect`: the instance, pretty-printed, no trailing newline.
    public static func json(_ instance: Wasmlet_V1_Instance, pretty: Bool = true) -> String {
        var writer = JSONWriter(pretty: pretty)
        write(instance, to: &writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// `wasmletctl list -o json`: {"instances": [...]}, sorted like the table, as UTF-8 bytes
    /// (a String of a 10,000-instance document would only cost copies); no trailing newline.
    public static func json(_ instances: [Wasmlet_V1_Instance], pretty: Bool = true) -> [UInt8] {
        var writer = JSONWriter(pretty: pretty, capacity: 64 + instances.count * (pretty ? 560 : 400))
        writer.beginObject()
        writer.key("instances")
        writer.beginArray()
        for instance in sortedByKey(instances) {
            writer.element()
            write(instance, to: &writer)
        }
        writer.endArray()
        writer.endObject()
        return writer.bytes
    }

    /// The daemon's counters, in a fixed order (name, value).
    public static func statsFields(_ stats: Wasmlet_V1_StatsResponse) -> [(String, UInt64)] {
        [
            ("instancesCreated", stats.instancesCreated),
            ("instancesDeleted", stats.instancesDeleted),
            ("created", stats.created),
            ("running", stats.running),
            ("exited", stats.exited),
            ("memoryReservedBytes", stats.memoryReservedBytes),
            ("memoryBudgetBytes", stats.memoryBudgetBytes),
            ("memoryChargedBytes", stats.memoryChargedBytes),
            ("memoryBudgetDenials", stats.memoryBudgetDenials),
            ("moduleCacheEntries", stats.moduleCacheEntries),
            ("moduleCacheBytes", stats.moduleCacheBytes),
            ("fuelConsumedTotal", stats.fuelConsumedTotal),
            ("uptimeSeconds", stats.uptimeSeconds),
        ]
    }

    public static func json(_ stats: Wasmlet_V1_StatsResponse) -> JSONValue {
        .object(statsFields(stats).map { ($0.0, .uint($0.1)) })
    }

    /// "name: value" lines, names aligned.
    public static func statsText(_ stats: Wasmlet_V1_StatsResponse) -> String {
        let fields = statsFields(stats)
        let width = fields.map(\.0.count).max() ?? 0
        return fields.map { name, value in
            name + ":" + String(repeating: " ", count: width - name.count + 1) + String(value)
        }.joined(separator: "\n") + "\n"
    }

    /// A one-line explanation of an exit that was not a plain return/proc_exit, or nil.
    public static func exitSummary(_ exit: Wasmlet_V1_ExitRecord) -> String? {
        let detail = exit.message.isEmpty ? "" : ": \(exit.message)"
        switch exit.reason {
        case .exited, .unspecified: return nil
        case .killed: return "killed by signal \(exit.signal) (exit code \(exit.code))"
        case .trapped: return "trapped\(detail)"
        case .outOfFuel: return "ran out of fuel\(detail)"
        case .deadlineExceeded: return "deadline exceeded\(detail)"
        case .failedToStart: return "failed to start\(detail)"
        case .daemonRestarted: return "daemon restarted while it ran\(detail)"
        case .UNRECOGNIZED(let value): return "ended with reason \(value)\(detail)"
        }
    }
}
