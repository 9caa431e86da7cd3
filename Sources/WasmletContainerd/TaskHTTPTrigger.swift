import Foundation
import WasmletConventions
import WasmletRuntime

/// A container's HTTP trigger, from its annotations: `wasmlet.dev/trigger: http` makes the
/// container a service (wasmletd serves HTTP on its `wasmlet.dev/listen` listeners and runs a
/// fresh instance of its module per request, WAGI's contract). The other annotations set the
/// trigger's limits, in the units `wasmletctl serve` takes (`ByteSize`, `DurationSyntax`);
/// each left out keeps the runtime's default (`HTTPTriggerSpec`).
///
/// | annotation | meaning |
/// |---|---|
/// | `wasmlet.dev/http-max-concurrency` | requests running at once |
/// | `wasmlet.dev/http-queue-length` | requests that may wait for a slot (0: none) |
/// | `wasmlet.dev/http-queue-timeout` | longest wait in the queue (503 past it) |
/// | `wasmlet.dev/http-max-body` | largest request body (413) |
/// | `wasmlet.dev/http-max-headers` | largest request line and headers (431) |
/// | `wasmlet.dev/http-max-response` | largest guest output (502) |
/// | `wasmlet.dev/http-read-timeout` | time a connection has to send each whole request |
///
/// The per-request fuel, memory and deadline are the container's own (`wasmlet.dev/fuel`, the
/// memory limit, `wasmlet.dev/timeout`), as for a command.
enum TaskHTTPTrigger {
    static let triggerAnnotation = "wasmlet.dev/trigger"
    static let prefix = "wasmlet.dev/http-"

    /// The trigger the annotations ask for, nil for an ordinary container. Throws, naming the
    /// annotation, on an unknown trigger, a malformed value, a limit annotation without the
    /// trigger, or a trigger without listeners.
    static func spec(_ annotations: [String: String]) throws -> HTTPTriggerSpec? {
        let limitKeys = annotations.keys.filter { $0.hasPrefix(prefix) }.sorted()
        guard let kind = annotations[triggerAnnotation] else {
            if let key = limitKeys.first {
                throw TaskError.invalidSpec("annotation \(key) needs \(triggerAnnotation)=http")
            }
            return nil
        }
        guard kind.trimmingCharacters(in: .whitespaces) == "http" else {
            throw TaskError.invalidSpec("annotation \(triggerAnnotation)=\"\(kind)\": the only trigger is \"http\"")
        }
        guard annotations[TaskListeners.annotation] != nil else {
            throw TaskError.invalidSpec(
                "annotation \(triggerAnnotation)=http needs listeners to serve on: add \(TaskListeners.annotation), e.g. \"8080\"")
        }
        var trigger = HTTPTriggerSpec()
        for key in limitKeys {
            let text = annotations[key]!.trimmingCharacters(in: .whitespaces)
            do throws(ParseError) {
                switch String(key.dropFirst(prefix.count)) {
                case "max-concurrency":
                    trigger.maxConcurrency = try count(text)
                    guard trigger.maxConcurrency > 0 else { throw ParseError("must be at least 1") }
                case "queue-length": trigger.queueLength = try count(text)
                case "queue-timeout": trigger.queueTimeoutMilliseconds = try positiveMilliseconds(text)
                case "read-timeout": trigger.requestReadTimeoutMilliseconds = try positiveMilliseconds(text)
                case "max-body": trigger.maxBodyBytes = try ByteSize.parse(text)
                case "max-response": trigger.maxResponseBytes = try ByteSize.parse(text)
                case "max-headers":
                    let bytes = try ByteSize.parse(text)
                    guard bytes <= UInt64(UInt32.max) else { throw ParseError("at most 4G") }
                    trigger.maxHeaderBytes = UInt32(bytes)
                default:
                    throw ParseError(
                        "unknown HTTP trigger setting (known: max-concurrency, queue-length, queue-timeout, read-timeout, max-body, max-headers, max-response)")
                }
            } catch {
                throw TaskError.invalidSpec("annotation \(key)=\"\(text)\": \(error.message)")
            }
        }
        return trigger
    }

    private static func count(_ text: String) throws(ParseError) -> UInt32 {
        guard let value = UInt32(text) else { throw ParseError("not a whole number from 0 to \(UInt32.max)") }
        return value
    }

    private static func positiveMilliseconds(_ text: String) throws(ParseError) -> UInt64 {
        let value = try DurationSyntax.parseMilliseconds(text)
        guard value > 0 else { throw ParseError("must be more than 0") }
        return value
    }
}
