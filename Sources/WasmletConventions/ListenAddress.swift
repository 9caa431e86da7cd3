// The `[ADDR:]PORT` values of `--listen` (standard library only, like the rest of this module).

/// A listener address as written on a command line or in an annotation: `PORT`, `ADDR:PORT`,
/// or `[IPV6]:PORT`. ADDR is an IP literal (no host names); PORT is 0-65535, 0 meaning any
/// free port.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The IP literal, without brackets.
    public var address: String
    public var port: UInt16

    public init(address: String, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// `ADDR:PORT`, with brackets around an IPv6 address.
    public var description: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }

    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses `[ADDR:]PORT`; a bare PORT gets `defaultAddress`.
    public static func parse(_ text: String, defaultAddress: String = "127.0.0.1") throws(ParseError) -> ListenAddress {
        func fail(_ why: String) -> ParseError { ParseError(message: "invalid listen address \"\(text)\": \(why); expected [ADDR:]PORT, e.g. 8080, 127.0.0.1:8080 or [::1]:8080") }
        guard !text.isEmpty else { throw fail("it is empty") }
        let address: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("no ']' closes the IPv6 address") }
            address = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw fail("a port must follow ']' after ':'") }
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
            portText = Substring(text)
        }
        guard !portText.isEmpty else { throw fail("the port is missing") }
        guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), portText.count <= 5, let port = Int(portText) else {
            throw fail("the port \"\(portText)\" is not a number")
        }
        guard port <= 65535 else { throw fail("the port \(port) is over 65535") }
        return ListenAddress(address: String(address), port: UInt16(port))
    }

    /// A dotted quad of decimal octets 0-255, without leading zeros.
    static func isIPv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { part in
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(part), value <= 255
            else { return false }
            return part.count == 1 || part.first != "0"
        }
    }

    /// An IPv6 address (RFC 4291 text forms: groups of 1-4 hex digits, one `::` at most, an
    /// optional dotted-quad tail); no zone index.
    static func isIPv6(_ text: Substring) -> Bool {
        let characters = Array(text)
        var doubleColon: Int?
        for index in characters.indices.dropLast() where characters[index] == ":" && characters[index + 1] == ":" {
            if let first = doubleColon, first != index - 1 { return false }  // a second "::"
            if doubleColon != nil { return false }  // ":::"
            doubleColon = index
        }
        /// The groups of one side of "::" (or of the whole address); nil when one is malformed.
        func count(_ part: Substring, last: Bool) -> Int? {
            if part.isEmpty { return 0 }
            let groups = part.split(separator: ":", omittingEmptySubsequences: false)
            var total = 0
            for (position, group) in groups.enumerated() {
                if last && position == groups.count - 1 && group.contains(".") {
                    guard isIPv4(group) else { return nil }
                    total += 2
                } else {
                    guard (1...4).contains(group.count), group.allSatisfy({ $0.isHexDigit }) else { return nil }
                    total += 1
                }
            }
            return total
        }
        if let at = doubleColon {
            let head = text[text.startIndex..<text.index(text.startIndex, offsetBy: at)]
            let tail = text[text.index(text.startIndex, offsetBy: at + 2)...]
            guard let before = count(head, last: false), let after = count(tail, last: true) else { return false }
            return before + after <= 7
        }
        return count(text, last: true) == 8
    }
}
