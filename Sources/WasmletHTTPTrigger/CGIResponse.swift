/// A guest's stdout read as a CGI response (RFC 3875 section 6, as WAGI reads it): header lines
/// up to the first blank line (LF or CRLF line ends), then the body.
///
/// - `Status: CODE [reason]` sets the code; one that is not three digits from 100 to 599 makes
///   the output invalid.
/// - A `Location` without a Status gives 302.
/// - The output must have at least one of Content-Type, Status or Location, as WAGI requires.
/// - A header name must be an HTTP token, and a value (a Status reason too) may hold no control
///   character but tab: a bare CR or a NUL in a guest's header would otherwise reach the client.
///   This is the server's only check of the headers it sends (NIO's own validator is off: it
///   cost the event loop 7 % of a hello's request, see BENCHMARKS.md).
/// - Where it differs from WAGI: output that is not a CGI response is answered 502 (WAGI 500),
///   since it is the upstream that failed, as a gateway reports it.
struct CGIResponse: Equatable, Sendable {
    var status: Int
    var reason: String?
    /// The guest's headers in order, without Status and without the framing headers the server
    /// sets itself (Content-Length, Transfer-Encoding, Connection).
    var headers: [(name: String, value: String)]
    var body: ArraySlice<UInt8>

    enum Invalid: Error, Equatable {
        case noBlankLine
        case malformedHeaderLine(String)
        case badStatus(String)
        case noRequiredHeader
        case forbiddenCharacter(String)

        var explanation: String {
            switch self {
            case .noBlankLine: return "no blank line ends the CGI headers"
            case .malformedHeaderLine(let line): return "the header line \"\(line)\" has no colon"
            case .badStatus(let value): return "the Status \"\(value)\" is not a code from 100 to 599"
            case .noRequiredHeader: return "it has none of Content-Type, Status or Location"
            case .forbiddenCharacter(let line):
                return "the header line \"\(line)\" has a character HTTP does not allow (names are tokens, values have no control characters)"
            }
        }
    }

    /// RFC 9110 tchar.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// Field-value bytes: visible, space, tab, or obs-text (0x80 and up).
    static func isValueByte(_ byte: UInt8) -> Bool { byte == 0x09 || (byte >= 0x20 && byte != 0x7F) }

    static let framingHeaders: Set<String> = ["content-length", "transfer-encoding", "connection"]

    static func == (lhs: CGIResponse, rhs: CGIResponse) -> Bool {
        lhs.status == rhs.status && lhs.reason == rhs.reason && lhs.body == rhs.body
            && lhs.headers.map { [$0.name, $0.value] } == rhs.headers.map { [$0.name, $0.value] }
    }

    /// Longest header section read; a guest's output without a blank line in this many bytes
    /// is not a CGI response.
    static let maxHeaderBytes = 64 << 10

    static func parse(_ output: [UInt8]) throws(Invalid) -> CGIResponse {
        var headers: [(name: String, value: String)] = []
        var status: Int?
        var reason: String?
        var sawRequired = false
        var hasLocation = false
        var lineStart = 0
        var index = 0
        let limit = min(output.count, maxHeaderBytes)
        while true {
            guard let newline = output[index..<limit].firstIndex(of: UInt8(ascii: "\n")) else { throw .noBlankLine }
            var lineEnd = newline
            if lineEnd > lineStart && output[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            index = newline + 1
            if lineEnd == lineStart { break }
            let line = String(decoding: output[lineStart..<lineEnd], as: UTF8.self)
            lineStart = index
            guard let colon = line.firstIndex(of: ":") else { throw .malformedHeaderLine(line) }
            let name = line[..<colon].trimmingHTTPWhitespace
            let value = line[line.index(after: colon)...].trimmingHTTPWhitespace
            guard !name.isEmpty else { throw .malformedHeaderLine(line) }
            guard name.utf8.allSatisfy(Self.isTokenByte), value.utf8.allSatisfy(Self.isValueByte) else {
                throw .forbiddenCharacter(String(line.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }))
            }
            // A token is ASCII, so this is a plain case fold.
            let lowercasedName = name.lowercased()
            switch lowercasedName {
            case "status":
                let parts = value.split(separator: " ", maxSplits: 1)
                guard let first = parts.first, first.count == 3, let code = Int(first), (100...599).contains(code) else {
                    throw .badStatus(value)
                }
                status = code
                reason = parts.count > 1 ? String(parts[1]) : nil
                sawRequired = true
                continue
            case "location":
                hasLocation = true
                sawRequired = true
            case "content-type":
                sawRequired = true
            default:
                break
            }
            if framingHeaders.contains(lowercasedName) { continue }
            headers.append((name, value))
        }
        guard sawRequired else { throw .noRequiredHeader }
        return CGIResponse(status: status ?? (hasLocation ? 302 : 200), reason: reason, headers: headers, body: output[index...])
    }
}

extension Substring {
    /// Without the optional white space (spaces and tabs, RFC 9110) around a header's name or
    /// value. On the UTF-8 bytes: walking Characters cost a request more than the rest of the
    /// header line's parse.
    var trimmingHTTPWhitespace: String {
        let bytes = utf8
        var start = bytes.startIndex
        var end = bytes.endIndex
        func isWhitespace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        while start < end, isWhitespace(bytes[start]) { start = bytes.index(after: start) }
        while start < end, isWhitespace(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        return String(self[start..<end])
    }
}
