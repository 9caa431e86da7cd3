/// A check TOML text passes before it reaches TOMLKit.
///
/// TOMLKit 0.6 bundles toml++ 3, whose parser asserts (and so aborts the whole process) on a
/// non-ASCII character where a key should start, as in `[é]`; `scripts/fuzz.sh fuzz-config-toml`
/// found it. wasmletd re-reads its `--config` on SIGHUP, so one such byte in that file would end
/// every guest on the node. TOML allows non-ASCII text only inside strings and comments (a bare
/// key is ASCII letters, digits, `_` and `-`), so refusing it anywhere else refuses no valid
/// document: the error names its line and column instead.
public enum TOMLPreflight {
    public static func check(_ text: String) throws(ParseError) {
        enum Place { case plain, comment, basic, literal, multilineBasic, multilineLiteral }
        let bytes = Array(text.utf8)
        var place = Place.plain
        var line = 1
        var lineStart = 0
        var index = 0
        func at(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }
        func isTriple(_ quote: UInt8) -> Bool { at(0) == quote && at(1) == quote && at(2) == quote }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") {
                line += 1
                lineStart = index + 1
                // A single-line string or a comment ends with its line (an unterminated string is
                // the parser's error to report).
                if place != .multilineBasic && place != .multilineLiteral { place = .plain }
                index += 1
                continue
            }
            switch place {
            case .plain:
                if byte >= 0x80 {
                    // Columns count characters: continuation bytes of UTF-8 are not counted.
                    let column = bytes[lineStart..<index].filter { $0 & 0xC0 != 0x80 }.count + 1
                    throw ParseError(
                        "line \(line), column \(column): a non-ASCII character outside a string or comment (a key that is not quoted is ASCII letters, digits, _ and -)")
                }
                if byte == UInt8(ascii: "#") {
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
