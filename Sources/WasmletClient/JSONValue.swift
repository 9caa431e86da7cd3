/// A JSON document whose objects keep the key order they were built with, so output is stable.
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

    /// `rendered(pretty:)` as UTF-8 bytes, without making a String of a large document.
    public func renderedUTF8(pretty: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(estimatedLength(indent: pretty ? 0 : nil))
        write(to: &out, indent: pretty ? 0 : nil)
        return out
    }

    /// About the rendered length (exact but for escapes and numbers), so the buffer is
    /// allocated once instead of doubled a dozen times for a large list.
    private func estimatedLength(indent: Int?) -> Int {
        switch self {
        case .null, .bool: return 5
        case .int, .uint: return 20
        case .string(let value): return value.utf8.count + 2
        case .array(let items):
            let inner = indent.map { 2 * $0 + 3 } ?? 1
            return items.reduce(2 + (indent ?? 0) * 2) { $0 + $1.estimatedLength(indent: indent.map { $0 + 1 }) + inner }
        case .object(let members):
            let inner = indent.map { 2 * $0 + 5 } ?? 2
            return members.reduce(2 + (indent ?? 0) * 2) {
                $0 + $1.0.utf8.count + 2 + $1.1.estimatedLength(indent: indent.map { $0 + 1 }) + inner
            }
        }
    }

    // Written as UTF-8 bytes: appending to a String scalar by scalar was most of the time of
    // `wasmletctl list -o json` with 10,000 instances.
    private func write(to out: inout [UInt8], indent: Int?) {
        switch self {
        case .null: out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(let value): out.append(contentsOf: value ? [0x74, 0x72, 0x75, 0x65] : [0x66, 0x61, 0x6C, 0x73, 0x65])
        case .int(let value): out.append(contentsOf: String(value).utf8)
        case .uint(let value): out.append(contentsOf: String(value).utf8)
        case .string(let value): Self.writeString(value, to: &out)
        case .array(let items):
            if items.isEmpty {
                out.append(contentsOf: [0x5B, 0x5D])
                return
            }
            out.append(0x5B)
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(0x2C) }
                Self.newline(&out, indent.map { $0 + 1 })
                item.write(to: &out, indent: indent.map { $0 + 1 })
            }
            Self.newline(&out, indent)
            out.append(0x5D)
        case .object(let members):
            if members.isEmpty {
                out.append(contentsOf: [0x7B, 0x7D])
                return
            }
            out.append(0x7B)
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out.append(0x2C) }
                Self.newline(&out, indent.map { $0 + 1 })
                Self.writeString(key, to: &out)
                out.append(0x3A)
                if indent != nil { out.append(0x20) }
                value.write(to: &out, indent: indent.map { $0 + 1 })
            }
            Self.newline(&out, indent)
            out.append(0x7D)
        }
    }

    private static func newline(_ out: inout [UInt8], _ indent: Int?) {
        guard let indent else { return }
        out.append(0x0A)
        out.append(contentsOf: repeatElement(0x20, count: 2 * indent))
    }

    private static func writeString(_ value: String, to out: inout [UInt8]) {
        out.append(0x22)
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte == 0x22 || byte == 0x5C || byte < 0x20 else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                start = index + 1
                switch byte {
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
                case 0x0D: out.append(contentsOf: [0x5C, 0x72])
                case 0x09: out.append(contentsOf: [0x5C, 0x74])
                default:
                    let digits = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, digits[Int(byte >> 4)], digits[Int(byte & 15)]])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        out.append(0x22)
    }
}
