// Reads one annotation out of an OCI runtime spec (config.json) without a JSON library.
//
// The scanner walks the JSON properly (strings with escapes, nesting) instead of searching for
// the key's text, so a key that merely appears inside some other string or some other object is
// never mistaken for the annotation. Only `annotations` at the top level of the spec counts.

public enum SpecAnnotations {
    /// The CRI annotation naming a container's pod sandbox: the shim's group id.
    public static let sandboxIDKey = "io.kubernetes.cri.sandbox-id"

    /// The string value of top-level `annotations[key]`; nil if absent, not a string, or the
    /// text is not valid JSON up to that point.
    public static func value(forKey key: String, inSpec json: [UInt8]) -> String? {
        var scanner = JSONScanner(json)
        return scanner.topLevelAnnotation(key)
    }

    /// Reads `path` (a config.json) and looks the annotation up; nil if it cannot be read.
    public static func value(forKey key: String, inFile path: String) -> String? {
        guard let bytes = FileIO.readFile(path, limit: 16 << 20) else { return nil }
        return value(forKey: key, inSpec: bytes)
    }
}

/// A JSON value as `JSONScanner.parseDocument` gives it (numbers and keywords kept as text).
indirect enum JSONValue: Sendable, Equatable {
    case string(String)
    case literal(String)
    case array([JSONValue])
    case object([String: JSONValue])

    subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var array: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }
}

/// A minimal JSON walker over UTF-8 bytes. Every method returns nil/false on malformed input
/// instead of trapping; nesting deeper than `maxDepth` counts as malformed (no stack exhaustion).
struct JSONScanner {
    private let bytes: [UInt8]
    private var index = 0
    private let maxDepth = 128

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func topLevelAnnotation(_ key: String) -> String? {
        skipWhitespace()
        guard consume(UInt8(ascii: "{")) else { return nil }
        var found: String?
        // Malformed text after the annotation was found does not matter: keep what was found.
        _ = forEachMember { scanner, name in
            if name == "annotations", scanner.peek() == UInt8(ascii: "{") {
                scanner.index += 1
                var value: String?
                let inner = scanner.forEachMember { scanner, annotation in
                    if annotation == key, value == nil, scanner.peek() == UInt8(ascii: "\"") {
                        value = scanner.parseString()
                        return value != nil
                    }
                    return scanner.skipValue(depth: 2)
                }
                if inner, let value { found = value }
                return inner
            }
            return scanner.skipValue(depth: 1)
        }
        return found
    }

    /// Parses the whole text as one JSON value (nil when malformed or nested past `maxDepth`).
    mutating func parseDocument() -> JSONValue? {
        skipWhitespace()
        guard let value = parseValue(depth: 0) else { return nil }
        skipWhitespace()
        return index == bytes.count ? value : nil
    }

    private mutating func parseValue(depth: Int) -> JSONValue? {
        guard depth < maxDepth else { return nil }
        skipWhitespace()
        guard let byte = peek() else { return nil }
        switch byte {
        case UInt8(ascii: "\""):
            return parseString().map(JSONValue.string)
        case UInt8(ascii: "{"):
            index += 1
            var members: [String: JSONValue] = [:]
            let ok = forEachMember { scanner, name in
                guard let value = scanner.parseValue(depth: depth + 1) else { return false }
                members[name] = value
                return true
            }
            return ok ? .object(members) : nil
        case UInt8(ascii: "["):
            index += 1
            var elements: [JSONValue] = []
            skipWhitespace()
            if consume(UInt8(ascii: "]")) { return .array(elements) }
            while true {
                guard let value = parseValue(depth: depth + 1) else { return nil }
                elements.append(value)
                skipWhitespace()
                if consume(UInt8(ascii: ",")) { continue }
                return consume(UInt8(ascii: "]")) ? .array(elements) : nil
            }
        default:
            let start = index
            while let next = peek(), isLiteralByte(next) { index += 1 }
            guard index > start else { return nil }
            return .literal(String(decoding: bytes[start..<index], as: UTF8.self))
        }
    }

    /// Iterates the members of an object whose `{` was consumed; `body` must consume the value.
    /// Returns false on malformed input.
    private mutating func forEachMember(_ body: (inout JSONScanner, String) -> Bool) -> Bool {
        skipWhitespace()
        if consume(UInt8(ascii: "}")) { return true }
        while true {
            skipWhitespace()
            guard let name = parseString() else { return false }
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else { return false }
            skipWhitespace()
            guard body(&self, name) else { return false }
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            return consume(UInt8(ascii: "}"))
        }
    }

    /// Skips one value of any kind.
    private mutating func skipValue(depth: Int) -> Bool {
        guard depth < maxDepth else { return false }
        skipWhitespace()
        guard let byte = peek() else { return false }
        switch byte {
        case UInt8(ascii: "\""):
            return parseString() != nil
        case UInt8(ascii: "{"):
            index += 1
            return forEachMember { scanner, _ in scanner.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            index += 1
            skipWhitespace()
            if consume(UInt8(ascii: "]")) { return true }
            while true {
                guard skipValue(depth: depth + 1) else { return false }
                skipWhitespace()
                if consume(UInt8(ascii: ",")) { continue }
                return consume(UInt8(ascii: "]"))
            }
        default:
            // Numbers, true, false, null: a run of literal characters.
            let start = index
            while let next = peek(), isLiteralByte(next) { index += 1 }
            return index > start
        }
    }

    private func isLiteralByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }

    /// Parses a string at the cursor, decoding escapes (\n, \", \\, \/, \b, \f, \r, \t, \uXXXX
    /// including surrogate pairs). Lone surrogates become U+FFFD.
    mutating func parseString() -> String? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        var scalars = String.UnicodeScalarView()
        var raw = [UInt8]()  // plain UTF-8 bytes, flushed before each escape
        func flush() {
            if !raw.isEmpty {
                scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
                raw.removeAll()
            }
        }
        while let byte = peek() {
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                flush()
                return String(scalars)
            case UInt8(ascii: "\\"):
                flush()
                guard let escape = peek() else { return nil }
                index += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    guard let unit = parseHex4() else { return nil }
                    scalars.append(decodeUTF16(first: unit))
                default:
                    return nil
                }
            default:
                guard byte >= 0x20 else { return nil }  // raw control characters are invalid
                raw.append(byte)
            }
        }
        return nil  // unterminated
    }

    /// Completes a \u escape: a high surrogate followed by \uDC00-\uDFFF forms one scalar.
    private mutating func decodeUTF16(first: UInt16) -> Unicode.Scalar {
        let replacement: Unicode.Scalar = "\u{FFFD}"
        if (0xD800...0xDBFF).contains(first) {
            let save = index
            if consume(UInt8(ascii: "\\")), consume(UInt8(ascii: "u")), let second = parseHex4(),
                (0xDC00...0xDFFF).contains(second)
            {
                let value = 0x10000 + (UInt32(first - 0xD800) << 10) + UInt32(second - 0xDC00)
                return Unicode.Scalar(value) ?? replacement
            }
            index = save
            return replacement
        }
        return Unicode.Scalar(UInt32(first)) ?? replacement
    }

    private mutating func parseHex4() -> UInt16? {
        guard bytes.count - index >= 4 else { return nil }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipWhitespace() {
        while let byte = peek(),
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\t")
                || byte == UInt8(ascii: "\r")
        {
            index += 1
        }
    }
}
