// The `[ADDR:]PORT` values of `wasmletctl run --listen`, `wasmlet-run --listen` and the
// `wasmlet.dev/listen` annotation (standard library only, like the rest of this module): the one
// parser of that syntax. For containers the shim parses the annotation because it binds the
// sockets; wasmletd only compares the annotation text the sockets were made for.

/// A listener address: `PORT`, `ADDR:PORT`, or `[IPV6]:PORT`. ADDR is an IP literal (no host
/// names); PORT is 0-65535, 0 meaning any free port.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The IP literal, without brackets.
    public var address: String
    public var port: UInt16

    /// Inside a pod, a bare port listens on every address of the pod's network namespace.
    public static let podDefaultAddress = "0.0.0.0"

    public init(address: String, port: UInt16) {
        self.address = address
        self.port = port
    }

    public var isIPv6: Bool { address.contains(":") }

    /// `ADDR:PORT`, with brackets around an IPv6 address.
    public var description: String { isIPv6 ? "[\(address)]:\(port)" : "\(address):\(port)" }

    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses `[ADDR:]PORT` (surrounding blanks ignored); a bare PORT gets `defaultAddress`.
    public static func parse(_ input: String, defaultAddress: String = "127.0.0.1") throws(ParseError) -> ListenAddress {
        let text = Substring(input).trimmingBlanks()
        func fail(_ why: String) -> ParseError {
            ParseError(
                message: "invalid listen address \"\(input)\": \(why); expected [ADDR:]PORT, e.g. 8080, 0.0.0.0:8080 or [::1]:8080")
        }
        guard !text.isEmpty else { throw fail("it is empty") }
        let address: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("no ']' closes the IPv6 address") }
            address = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw fail("':' and a port must follow ']'") }
            portText = rest.dropFirst()
            guard isIPv6(address) else { throw fail("\"\(address)\" is not an IPv6 address") }
        } else if let colon = text.lastIndex(of: ":") {
            address = text[..<colon]
            portText = text[text.index(after: colon)...]
            if address.contains(":") { throw fail("write an IPv6 address in brackets, as [::1]:8080") }
            guard !address.isEmpty else { throw fail("the address before ':' is empty") }
            guard isIPv4(address) else { throw fail("\"\(address)\" is not an IP address (host names are not accepted)") }
        } else {
            address = Substring(defaultAddress)
            portText = text
        }
        guard !portText.isEmpty else { throw fail("the port is missing") }
        guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), portText.count <= 5, let port = Int(portText) else {
            throw fail("the port \"\(portText)\" is not a number")
        }
        guard port <= 65535 else { throw fail("the port \(port) is over 65535") }
        return ListenAddress(address: String(address), port: UInt16(port))
    }

    /// Parses a comma-separated list (the annotation's form). Empty items, an empty list and
    /// the same address twice are errors.
    public static func parseList(_ text: String, defaultAddress: String) throws(ParseError) -> [ListenAddress] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        var result: [ListenAddress] = []
        for item in items {
            let trimmed = item.trimmingBlanks()
            guard !trimmed.isEmpty else {
                throw ParseError(message: "invalid listen list \"\(text)\": an item is empty; expected [ADDR:]PORT[,[ADDR:]PORT...]")
            }
            let parsed = try parse(String(trimmed), defaultAddress: defaultAddress)
            if parsed.port != 0, result.contains(parsed) {
                throw ParseError(message: "invalid listen list \"\(text)\": \(parsed) is listed twice")
            }
            result.append(parsed)
        }
        return result
    }

    /// A dotted quad of decimal octets 0-255, without leading zeros.
    static func isIPv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { part in
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(part),
                value <= 255
            else { return false }
            return part.count == 1 || part.first != "0"
        }
    }

    /// An IPv6 address in RFC 4291 text form: groups of 1-4 hex digits, at most one `::`, an
    /// optional dotted-quad tail; no zone index.
    static func isIPv6(_ text: Substring) -> Bool {
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return false }
        func groups(_ part: Substring, last: Bool) -> Int? {
            if part.isEmpty { return 0 }
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            var total = 0
            for (position, piece) in pieces.enumerated() {
                if last && position == pieces.count - 1 && piece.contains(".") {
                    guard isIPv4(piece) else { return nil }
                    total += 2
                } else {
                    guard (1...4).contains(piece.count), piece.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return nil }
                    total += 1
                }
            }
            return total
        }
        if halves.count == 2 {
            guard let before = groups(halves[0], last: false), let after = groups(halves[1], last: true) else { return false }
            return before + after <= 7
        }
        return groups(text, last: true) == 8
    }
}

extension Substring {
    fileprivate func trimmingBlanks() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result.removeFirst() }
        while let last = result.last, last == " " || last == "\t" { result.removeLast() }
        return result
    }

    /// Splits on a multi-character separator (the standard library has no such split).
    fileprivate func components(separatedBy separator: String) -> [Substring] {
        var parts: [Substring] = []
        var rest = self
        while let range = rest.firstRange(of: separator) {
            parts.append(rest[..<range.lowerBound])
            rest = rest[range.upperBound...]
        }
        parts.append(rest)
        return parts
    }
}
