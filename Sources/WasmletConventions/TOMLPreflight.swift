/// A check TOML text passes before it reaches TOMLKit.
///
/// TOMLKit 0.6 bundles toml++ 3.4, whose parser asserts (and so aborts the whole process) in
/// three places `scripts/fuzz.sh fuzz-config-toml` found: a non-ASCII character where a key should
/// start (`é = 1`, `[é]`); a table header whose key starts with anything but a bare-key
/// character or a quote (`[#`, `[ ]x`, `[` at the end of a line); and a `}` where an array expects
/// its next value (`a = [}`, `a = [1, }`, also after blanks, comments and line breaks). SwiftPM
/// builds C++ dependencies without NDEBUG, so the assertions are live in release builds too.
/// All three are invalid TOML anyway (non-ASCII text belongs only in strings and comments; a
/// header names a key; a bracket closes only what it opened), so refusing them here refuses no
/// valid document, and the error names line and column. toml++ aborts on more than these (see
/// wasmletd's `ConfigurationParserChild`, which keeps such crashes out of the daemon).
public enum TOMLPreflight {
    public static func check(_ text: String) throws(ParseError) {
        enum Place { case plain, comment, basic, literal, multilineBasic, multilineLiteral }
        let bytes = Array(text.utf8)
        var place = Place.plain
        var line = 1
        var lineStart = 0
        var index = 0
        // The unclosed `[` and `{` of values, innermost last: a `[` that starts a line inside an
        // array is part of the value, not a table header, and a `}` may close only a `{`.
        var open: [UInt8] = []
        // Only spaces and tabs so far on this line (outside any string).
        var atLineStart = true
        func at(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }
        func isTriple(_ quote: UInt8) -> Bool { at(0) == quote && at(1) == quote && at(2) == quote }
        func column(_ offset: Int) -> Int {
            // Columns count characters: continuation bytes of UTF-8 are not counted.
            bytes[lineStart..<offset].filter { $0 & 0xC0 != 0x80 }.count + 1
        }
        func isBlank(_ byte: UInt8?) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        func startsKey(_ byte: UInt8?) -> Bool {
            // The end of the text is the parser's to report; a non-ASCII byte is refused as such
            // when the scan reaches it.
            guard let byte, byte < 0x80 else { return true }
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "]"):
                return true
            default: return false
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") {
                line += 1
                lineStart = index + 1
                // A single-line string or a comment ends with its line (an unterminated string is
                // the parser's error to report); a multi-line string goes on.
                if place != .multilineBasic && place != .multilineLiteral {
                    place = .plain
                    atLineStart = true
                }
                index += 1
                continue
            }
            switch place {
            case .plain:
                if byte >= 0x80 {
                    throw ParseError(
                        "line \(line), column \(column(index)): a non-ASCII character outside a string or comment (a key that is not quoted is ASCII letters, digits, _ and -)")
                }
                let wasAtLineStart = atLineStart
                if !isBlank(byte) { atLineStart = false }
                if byte == UInt8(ascii: "["), wasAtLineStart, open.isEmpty {
                    // A table header: `[` or `[[`, blanks, then its key.
                    var next = index + 1
                    while next < bytes.count && isBlank(bytes[next]) { next += 1 }
                    if next < bytes.count && bytes[next] == UInt8(ascii: "[") {
                        next += 1
                        while next < bytes.count && isBlank(bytes[next]) { next += 1 }
                    }
                    guard startsKey(next < bytes.count ? bytes[next] : nil) else {
                        throw ParseError(
                            "line \(line), column \(column(next)): a table header must name a key (ASCII letters, digits, _ and -, or a quoted key)")
                    }
                    index = next
                    continue
                }
                if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
                    open.append(byte)
                } else if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                    // With nothing open, a `]` ends a table header (or is the parser's error).
                    if let innermost = open.popLast() {
                        let closes = innermost == UInt8(ascii: "[") ? UInt8(ascii: "]") : UInt8(ascii: "}")
                        guard byte == closes else {
                            throw ParseError(
                                "line \(line), column \(column(index)): '\(Character(Unicode.Scalar(byte)))' where '\(Character(Unicode.Scalar(closes)))' must close the \(innermost == UInt8(ascii: "[") ? "array" : "inline table") first")
                        }
                    }
                } else if byte == UInt8(ascii: "#") {
                    place = .comment
                } else if isTriple(UInt8(ascii: "\"")) {
                    place = .multilineBasic
                    index += 2
                } else if isTriple(UInt8(ascii: "'")) {
                    place = .multilineLiteral
                    index += 2
                } else if byte == UInt8(ascii: "\"") {
                    place = .basic
                } else if byte == UInt8(ascii: "'") {
                    place = .literal
                }
            case .comment:
                break
            case .basic, .multilineBasic:
                if byte == UInt8(ascii: "\\") {
                    index += 1  // The escaped character (a quote, a backslash) does not end the string.
                } else if place == .basic && byte == UInt8(ascii: "\"") {
                    place = .plain
                } else if place == .multilineBasic && isTriple(UInt8(ascii: "\"")) {
                    index += 2
                    // Up to two more quotes belong to the string (`""""` ends it with one).
                    while at(1) == UInt8(ascii: "\"") { index += 1 }
                    place = .plain
                }
            case .literal:
                if byte == UInt8(ascii: "'") { place = .plain }
            case .multilineLiteral:
                if isTriple(UInt8(ascii: "'")) {
                    index += 2
                    while at(1) == UInt8(ascii: "'") { index += 1 }
                    place = .plain
                }
            }
            index += 1
        }
    }
}
