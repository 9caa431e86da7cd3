import WasmletJSON

/// A JSON document whose objects keep the key order they were built with, so output is stable.
/// Small documents (inspect, stats) are built as values; `wasmletctl list` writes its large one
/// through `JSONWriter` directly, which is also what renders these.
public indirect enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case string(String)
    case array([JSONValue])
    /// Keys in output order.
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.rendered() == rhs.rendered() }
    public func hash(into hasher: inout Hasher) { hasher.combine(rendered()) }

    /// Pretty-printed with two-space indentation when `pretty`, else compact; no trailing newline.
    public func rendered(pretty: Bool = true) -> String {
        String(decoding: renderedUTF8(pretty: pretty), as: UTF8.self)
    }

    /// `rendered(pretty:)` as UTF-8 bytes.
    public func renderedUTF8(pretty: Bool = true) -> [UInt8] {
        var writer = JSONWriter(pretty: pretty)
        write(to: &writer)
        return writer.bytes
    }

    /// Writes this value at the writer's current position.
    public func write(to writer: inout JSONWriter) {
        switch self {
        case .null: writer.null()
        case .bool(let value): writer.bool(value)
        case .int(let value): writer.int(value)
        case .uint(let value): writer.uint(value)
        case .string(let value): writer.string(value)
        case .array(let items):
            writer.beginArray()
            for item in items {
                writer.element()
                item.write(to: &writer)
            }
            writer.endArray()
        case .object(let members):
            writer.beginObject()
            for (key, value) in members {
                writer.key(key)
                value.write(to: &writer)
            }
            writer.endObject()
        }
    }
}
