#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes JSON straight into UTF-8 bytes, member by member: compact, or pretty with two-space
/// indentation (`"key": value`, `{}`/`[]` when empty).
///
/// Why not build a value tree: for `wasmletctl list -o json` with 10,000 instances, building
/// the tree, walking it and freeing it again was most of the command's time, and the daemon
/// writes an instance record (as JSONEncoder would, at a fraction of its cost) on every state
/// change. `JSONValue` (WasmletClient) renders through this too, so there is one layout.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    private let pretty: Bool
    /// Per open container: whether it has a member yet (decides the comma and the closing newline).
    private var hasMembers: [Bool] = []
    /// The current container has a member (or the document has its value).
    private var started = false

    public init(pretty: Bool = true, capacity: Int = 0) {
        self.pretty = pretty
        bytes.reserveCapacity(capacity)
    }

    // MARK: Containers

    public mutating func beginObject() { open(0x7B) }
    public mutating func endObject() { close(0x7D) }
    public mutating func beginArray() { open(0x5B) }
    public mutating func endArray() { close(0x5D) }

    /// Starts the next member of the current object: the separator, the key and the colon.
    public mutating func key(_ name: String) {
        separate()
        Self.appendString(name, to: &bytes)
        bytes.append(0x3A)
        if pretty { bytes.append(0x20) }
    }

    /// Starts the next element of the current array.
    public mutating func element() { separate() }

    // MARK: Scalars

    public mutating func null() { bytes.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C]) }

    public mutating func bool(_ value: Bool) {
        bytes.append(contentsOf: value ? [0x74, 0x72, 0x75, 0x65] : [0x66, 0x61, 0x6C, 0x73, 0x65])
    }

    public mutating func string(_ value: String) { Self.appendString(value, to: &bytes) }

    public mutating func uint(_ value: UInt64) { Self.appendDecimal(value, to: &bytes) }

    public mutating func int(_ value: Int64) {
        if value < 0 { bytes.append(0x2D) }
        Self.appendDecimal(value.magnitude, to: &bytes)
    }

    /// An object of string members with its keys sorted (labels, environment), so the output
    /// does not depend on a dictionary's order.
    public mutating func sortedStringObject(_ members: [String: String]) {
        beginObject()
        for (name, value) in members.sorted(by: { $0.key < $1.key }) {
            key(name)
            string(value)
        }
        endObject()
    }

    /// `"2025-01-02T03:04:05.678Z"`: RFC 3339, UTC, milliseconds.
    public mutating func timestamp(seconds: Int64, milliseconds: Int32) {
        unescapedString { Self.appendTimestamp(seconds: seconds, milliseconds: milliseconds, to: &$0) }
    }

    /// The timestamp of `timestamp(seconds:milliseconds:)`, unquoted.
    public static func appendTimestamp(seconds: Int64, milliseconds: Int32, to out: inout [UInt8]) {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ number: Int32, _ width: Int, then separator: UInt8) {
            var rest = number
            if rest < 0 {
                out.append(0x2D)
                rest = -rest
            }
            var digits = 1
            var scale: Int32 = 10
            while digits < 10, rest >= scale {
                digits += 1
                scale = scale > Int32.max / 10 ? Int32.max : scale * 10
            }
            if digits < width { out.append(contentsOf: repeatElement(0x30, count: width - digits)) }
            appendDecimal(UInt64(rest), to: &out)
            out.append(separator)
        }
        pad(parts.tm_year + 1900, 4, then: 0x2D)
        pad(parts.tm_mon + 1, 2, then: 0x2D)
        pad(parts.tm_mday, 2, then: 0x54)
        pad(parts.tm_hour, 2, then: 0x3A)
        pad(parts.tm_min, 2, then: 0x3A)
        pad(parts.tm_sec, 2, then: 0x2E)
        pad(milliseconds, 3, then: 0x5A)
    }

    /// Appends bytes that already are a JSON value (e.g. a quoted timestamp).
    public mutating func raw(_ value: some Sequence<UInt8>) { bytes.append(contentsOf: value) }

    /// Writes `"…"` through `body`, which appends the string's UTF-8 bytes (nothing to escape).
    public mutating func unescapedString(_ body: (inout [UInt8]) -> Void) {
        bytes.append(0x22)
        body(&bytes)
        bytes.append(0x22)
    }

    // MARK: Layout

    private mutating func open(_ bracket: UInt8) {
        bytes.append(bracket)
        hasMembers.append(started)
        started = false
    }

    private mutating func close(_ bracket: UInt8) {
        let nonEmpty = started
        started = hasMembers.removeLast()
        if nonEmpty { newline() }
        bytes.append(bracket)
    }

    private mutating func separate() {
        if started { bytes.append(0x2C) }
        started = true
        newline()
    }

    private mutating func newline() {
        guard pretty else { return }
        bytes.append(0x0A)
        bytes.append(contentsOf: repeatElement(0x20, count: 2 * hasMembers.count))
    }

    // MARK: Encoding

    static func appendDecimal(_ value: UInt64, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for UInt64.max's 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var rest = value
            var index = buffer.count
            repeat {
                index -= 1
                buffer[index] = 0x30 + UInt8(rest % 10)
                rest /= 10
            } while rest > 0
            out.append(contentsOf: buffer[index...])
        }
    }

    static func appendString(_ value: String, to out: inout [UInt8]) {
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
                    let digits: StaticString = "0123456789abcdef"
                    let hex = digits.utf8Start
                    out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        out.append(0x22)
    }
}
