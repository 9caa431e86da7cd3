/// What a request's guest gets, built as WAGI (deislabs/wagi, which is CGI, RFC 3875) builds it:
/// the environment, argv and stdin of one per-request run. Pure values, no I/O.
///
/// Where this differs from WAGI (also in the README):
/// - CONTENT_TYPE is the request's Content-Type header (WAGI looks up a header literally named
///   `CONTENT_TYPE`, so it is always empty there);
/// - a header that comes more than once arrives as one `HTTP_` variable, its values joined
///   with ", " as RFC 9110 combines them (WAGI keeps one of them).
struct CGIRequest: Sendable {
    var method: String
    /// The request target as sent: path and query, not decoded.
    var target: String
    /// e.g. "HTTP/1.1".
    var protocolVersion: String
    /// In arrival order, names as sent.
    var headers: [(name: String, value: String)]
    var bodyLength: Int
    /// The client's IP address.
    var remoteAddress: String
    /// The listener's own port, for a Host header without one.
    var localPort: Int
    var route: HTTPRoute

    var path: Substring {
        if let question = target.firstIndex(of: "?") { return target[..<question] }
        return target[...]
    }

    /// The raw query, without `?`.
    var query: Substring {
        guard let question = target.firstIndex(of: "?") else { return "" }
        return target[target.index(after: question)...]
    }

    /// The service's own environment, then the CGI variables (which win), then one `HTTP_`
    /// variable per header, Authorization and Connection left out.
    ///
    /// Built on the connection's event loop for every request, so it works on the bytes of
    /// names: header names are tokens, which are ASCII (NIO's parser refuses anything else), and
    /// `uppercased()`, `lowercased()` and Foundation's `contains` cost the event loop a tenth of
    /// its time per request (`perf record -a` under `wrk -c1`).
    func environment(service: [String: String], serverSoftware: String) -> [String: String] {
        var environment = service
        environment.reserveCapacity(service.count + 19 + headers.count)
        let host = header("host") ?? ""
        let (serverName, serverPort) = Self.splitHost(host, defaultPort: localPort)
        let scriptName = route.scriptName
        let rawPathInfo = route.pathInfo(of: path)
        let pathInfo = Self.percentDecoded(rawPathInfo)
        let variables: [(String, String)] = [
            ("AUTH_TYPE", ""),
            ("CONTENT_LENGTH", String(bodyLength)),
            ("CONTENT_TYPE", header("content-type") ?? ""),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("PATH_INFO", pathInfo),
            ("PATH_TRANSLATED", pathInfo),
            ("QUERY_STRING", String(query)),
            ("REMOTE_ADDR", remoteAddress),
            ("REMOTE_HOST", remoteAddress),
            ("REMOTE_USER", ""),
            ("REQUEST_METHOD", method),
            ("SCRIPT_NAME", scriptName),
            ("SERVER_NAME", serverName),
            ("SERVER_PORT", serverPort),
            ("SERVER_PROTOCOL", protocolVersion),
            ("SERVER_SOFTWARE", serverSoftware),
            ("X_FULL_URL", "http://\(host.isEmpty ? "\(serverName):\(serverPort)" : host)\(target)"),
            ("X_MATCHED_ROUTE", route.pattern),
            ("X_RAW_PATH_INFO", String(rawPathInfo)),
        ]
        for (name, value) in variables { environment[name] = value }
        var combined: [String: String] = [:]
        combined.reserveCapacity(headers.count)
        for (name, value) in headers {
            guard let key = Self.variableName(forHeader: name) else { continue }
            combined[key] = combined[key].map { "\($0), \(value)" } ?? value
        }
        for (name, value) in combined { environment[name] = value }
        return environment
    }

    /// A header's CGI variable: "Content-Type" -> "HTTP_CONTENT_TYPE" (upper case, `-` as `_`);
    /// nil for Authorization and Connection, which CGI leaves out.
    static func variableName(forHeader name: String) -> String? {
        if equalsIgnoringASCIICase(name, "authorization") || equalsIgnoringASCIICase(name, "connection") { return nil }
        var bytes: [UInt8] = Array("HTTP_".utf8)
        bytes.reserveCapacity(5 + name.utf8.count)
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "-"): bytes.append(UInt8(ascii: "_"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): bytes.append(byte - 32)
            default: bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `lowercased` is already lower case.
    static func equalsIgnoringASCIICase(_ text: String, _ lowercased: String) -> Bool {
        text.utf8.count == lowercased.utf8.count
            && zip(text.utf8, lowercased.utf8).allSatisfy { byte, lower in
                byte == lower || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") && byte + 32 == lower)
            }
    }

    /// WAGI's argv: the path, then the raw query split on `&`, not decoded.
    var arguments: [String] {
        var arguments = [String(path)]
        if !query.isEmpty { arguments += query.split(separator: "&", omittingEmptySubsequences: false).map(String.init) }
        return arguments
    }

    /// A header's values joined with ", " (RFC 9110), nil when it is absent.
    func header(_ lowercasedName: String) -> String? {
        var found: String?
        for (name, value) in headers where Self.equalsIgnoringASCIICase(name, lowercasedName) {
            found = found.map { "\($0), \(value)" } ?? value
        }
        return found
    }

    /// "example.com:8080" -> ("example.com", "8080"); "[::1]:80" -> ("[::1]", "80"); no port
    /// -> the listener's.
    static func splitHost(_ host: String, defaultPort: Int) -> (String, String) {
        let bytes = host.utf8
        if let colon = bytes.lastIndex(of: UInt8(ascii: ":")), !bytes[colon...].contains(UInt8(ascii: "]")) {
            let port = bytes[bytes.index(after: colon)...]
            if !port.isEmpty, port.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                return (String(host[..<colon]), String(decoding: port, as: UTF8.self))
            }
        }
        return (host, String(defaultPort))
    }

    /// %XX decoded; an invalid escape stays as written, and bytes that are not UTF-8 are
    /// replaced (an environment value is a string).
    static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
                let high = hexValue(iterator[iterator.startIndex]), let low = hexValue(iterator[iterator.startIndex + 1])
            {
                bytes.append(high << 4 | low)
                iterator.removeFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
