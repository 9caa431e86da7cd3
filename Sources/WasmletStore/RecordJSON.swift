import Foundation
import WasmletJSON
import WasmletRuntime

/// The JSON of a `PersistedInstance`, written by hand: the same document `JSONEncoder` (with
/// sorted keys and `iso8601WithFractionalSeconds` dates) makes and `InstanceStore` reads back with
/// `JSONDecoder`, at a small fraction of the cost (the encoder was about a tenth of the daemon's
/// CPU time in a create/start/delete loop). Keys are sorted, absent optionals are left out, dates
/// are ISO 8601 UTC with milliseconds.
enum RecordJSON {
    static func encode(_ record: PersistedInstance) -> [UInt8] {
        var out = JSONWriter(pretty: false, capacity: 768)
        out.beginObject()
        out.key("args")
        out.beginArray()
        for argument in record.args {
            out.element()
            out.string(argument)
        }
        out.endArray()
        out.key("createdAt")
        date(record.createdAt, to: &out)
        if let cwd = record.cwd {
            out.key("cwd")
            out.string(cwd)
        }
        out.key("environment")
        out.sortedStringObject(record.environment)
        if let exit = record.exit {
            out.key("exit")
            encode(exit, to: &out)
        }
        if let trigger = record.httpTrigger {
            out.key("httpTrigger")
            out.beginObject()
            for (name, value) in [
                ("maxBodyBytes", trigger.maxBodyBytes), ("maxConcurrency", UInt64(trigger.maxConcurrency)),
                ("maxHeaderBytes", UInt64(trigger.maxHeaderBytes)), ("maxResponseBytes", trigger.maxResponseBytes),
                ("queueLength", UInt64(trigger.queueLength)), ("queueTimeoutMilliseconds", trigger.queueTimeoutMilliseconds),
                ("requestReadTimeoutMilliseconds", trigger.requestReadTimeoutMilliseconds),
            ] {
                out.key(name)
                out.uint(value)
            }
            out.key("routes")
            out.beginArray()
            for route in trigger.routes {
                out.element()
                out.beginObject()
                out.key("moduleDigest")
                out.string(route.moduleDigest)
                out.key("route")
                out.string(route.route)
                out.endObject()
            }
            out.endArray()
            out.endObject()
        }
        out.key("id")
        out.string(record.id)
        out.key("labels")
        out.sortedStringObject(record.labels)
        out.key("limits")
        out.beginObject()
        optional("fuel", record.limits.fuel, to: &out)
        optional("maxConnections", record.limits.maxConnections.map(UInt64.init), to: &out)
        optional("memoryBytes", record.limits.memoryBytes, to: &out)
        optional("stackBytes", record.limits.stackBytes, to: &out)
        optional("timeoutMilliseconds", record.limits.timeoutMilliseconds, to: &out)
        out.endObject()
        if let listeners = record.listeners {
            out.key("listeners")
            out.beginArray()
            for listener in listeners {
                out.element()
                out.beginObject()
                out.key("boundAddress")
                out.string(listener.boundAddress)
                out.key("boundPort")
                out.uint(UInt64(listener.boundPort))
                out.key("guestFd")
                out.uint(UInt64(listener.guestFd))
                out.key("requested")
                out.beginObject()
                out.key("address")
                out.string(listener.requested.address)
                out.key("port")
                out.uint(UInt64(listener.requested.port))
                out.endObject()
                out.endObject()
            }
            out.endArray()
        }
        out.key("memoryCapBytes")
        out.uint(record.memoryCapBytes)
        out.key("moduleDigest")
        out.string(record.moduleDigest)
        optional("modulePath", record.modulePath, to: &out)
        out.key("namespace")
        out.string(record.namespace)
        out.key("preopens")
        out.beginArray()
        for preopen in record.preopens {
            out.element()
            out.beginObject()
            out.key("guestPath")
            out.string(preopen.guestPath)
            out.key("hostPath")
            out.string(preopen.hostPath)
            out.key("readOnly")
            out.bool(preopen.readOnly)
            out.endObject()
        }
        out.endArray()
        out.key("serial")
        out.uint(UInt64(record.serial))
        if let startedAt = record.startedAt {
            out.key("startedAt")
            date(startedAt, to: &out)
        }
        out.key("state")
        out.string(record.state.rawValue)
        out.key("stdio")
        out.beginObject()
        optional("stderr", record.stdio.stderr, to: &out)
        optional("stdin", record.stdio.stdin, to: &out)
        optional("stdout", record.stdio.stdout, to: &out)
        out.endObject()
        out.key("version")
        out.int(Int64(record.version))
        out.endObject()
        return out.bytes
    }

    private static func encode(_ exit: ExitRecord, to out: inout JSONWriter) {
        out.beginObject()
        out.key("code")
        out.int(Int64(exit.code))
        out.key("cpuTimeNanoseconds")
        out.uint(exit.cpuTimeNanoseconds)
        out.key("exitedAt")
        date(exit.exitedAt, to: &out)
        out.key("fuelConsumed")
        out.uint(exit.fuelConsumed)
        out.key("memoryBudgetHit")
        out.bool(exit.memoryBudgetHit)
        out.key("memoryLimitHit")
        out.bool(exit.memoryLimitHit)
        out.key("message")
        out.string(exit.message)
        out.key("peakMemoryBytes")
        out.uint(exit.peakMemoryBytes)
        out.key("reason")
        out.string(exit.reason.rawValue)
        out.key("signal")
        out.int(Int64(exit.signal))
        if let startedAt = exit.startedAt {
            out.key("startedAt")
            date(startedAt, to: &out)
        }
        out.endObject()
    }

    /// `{"id":…,"namespace":…}`: what a journal's removal entry names.
    static func encode(_ key: InstanceKey) -> [UInt8] {
        var out = JSONWriter(pretty: false)
        out.beginObject()
        out.key("id")
        out.string(key.id)
        out.key("namespace")
        out.string(key.namespace)
        out.endObject()
        return out.bytes
    }

    /// A member left out when nil, as JSONEncoder leaves out nil optionals.
    private static func optional(_ name: String, _ value: UInt64?, to out: inout JSONWriter) {
        guard let value else { return }
        out.key(name)
        out.uint(value)
    }

    private static func optional(_ name: String, _ value: String?, to out: inout JSONWriter) {
        guard let value else { return }
        out.key(name)
        out.string(value)
    }

    /// As `Date.ISO8601FormatStyle` with fractional seconds writes it: UTC, milliseconds
    /// truncated (towards the past, also before 1970).
    private static func date(_ date: Date, to out: inout JSONWriter) {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        out.timestamp(seconds: seconds, milliseconds: Int32(milliseconds - seconds * 1000))
    }
}
