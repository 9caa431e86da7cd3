import WasmletAPI

/// A command-line value that does not parse; `description` is a one-line explanation.
public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Parsers for the values `wasmletctl` (and other clients) take on the command line.
public enum ArgumentParsing {
    /// A byte size: "65536", "64K", "16M", "1G" (also "16MB", "16MiB"); binary units; > 0.
    public static func parseBytes(_ text: String) throws(ParseError) -> UInt64 {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        var digits = text.uppercased().trimmingSpaces()
        var scale: UInt64 = 1
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        if let last = digits.last, let unit = units[last] {
            scale = unit
            digits.removeLast()
        }
        guard let value = UInt64(digits), value > 0 else {
            throw ParseError("invalid size \"\(text)\"; use e.g. 65536, 64K, 16M, 1G")
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw ParseError("size \"\(text)\" is too large") }
        return product
    }

    /// A duration in milliseconds: "1500" (milliseconds), "1500ms", "30s", "5m", "1h".
    public static func parseMilliseconds(_ text: String) throws(ParseError) -> UInt64 {
        let trimmed = text.trimmingSpaces().lowercased()
        let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        var digits = trimmed
        var scale: UInt64 = 1
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            digits = String(trimmed.dropLast(suffix.count))
            scale = factor
            break
        }
        guard let value = UInt64(digits), value > 0 else {
            throw ParseError("invalid duration \"\(text)\"; use milliseconds (1500) or 1500ms, 30s, 5m, 1h")
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw ParseError("duration \"\(text)\" is too large") }
        return product
    }

    /// `--listen [ADDR:]PORT` (ADDR defaults to 127.0.0.1; see `ListenAddress`).
    public static func parseListener(_ text: String, defaultAddress: String = "127.0.0.1") throws(ParseError) -> Wasmlet_V1_Listener {
        let parsed: ListenAddress
        do {
            parsed = try ListenAddress.parse(text, defaultAddress: defaultAddress)
        } catch {
            throw ParseError("--listen: \(error.message)")
        }
        var listener = Wasmlet_V1_Listener()
        listener.address = parsed.address
        listener.port = UInt32(parsed.port)
        return listener
    }

    /// "KEY=VALUE" (VALUE may be empty or contain "="); returned unchanged for CreateRequest.env.
    public static func parseEnvironment(_ pairs: [String]) throws(ParseError) -> [String] {
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ParseError("invalid --env \"\(pair)\"; expected KEY=VALUE")
            }
        }
        return pairs
    }

    /// "HOST[:GUEST][:ro|:rw]". The host directory is made absolute against `currentDirectory`
    /// and normalised; the guest path defaults to the host path as written.
    public static func parsePreopen(_ mapping: String, currentDirectory: String) throws(ParseError) -> Wasmlet_V1_Preopen {
        var parts = mapping.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var readOnly = false
        if parts.count > 1, parts.last == "ro" || parts.last == "rw" {
            readOnly = parts.removeLast() == "ro"
        }
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts.count == 1 || !parts[1].isEmpty else {
            throw ParseError("invalid --dir \"\(mapping)\"; expected HOST[:GUEST][:ro]")
        }
        return .with {
            $0.hostPath = absolutePath(parts[0], currentDirectory: currentDirectory)
            $0.guestPath = parts.count == 2 ? parts[1] : parts[0]
            $0.readonly = readOnly
        }
    }

    /// Label selectors: each "key=value", or several joined by commas ("app=web,tier=1").
    public static func parseLabels(_ selectors: [String]) throws(ParseError) -> [String: String] {
        var labels: [String: String] = [:]
        for selector in selectors {
            for item in selector.split(separator: ",", omittingEmptySubsequences: false) {
                guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                    throw ParseError("invalid label \"\(item)\"; expected key=value")
                }
                let key = String(item[..<equals])
                let value = String(item[item.index(after: equals)...])
                if let previous = labels[key], previous != value {
                    throw ParseError("label \"\(key)\" given twice with different values (\"\(previous)\", \"\(value)\")")
                }
                labels[key] = value
            }
        }
        return labels
    }

    /// Linux signal numbers by name, without the "SIG" prefix.
    public static let signalNumbers: [String: UInt32] = [
        "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
        "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
        "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
        "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
        "POLL": 29, "PWR": 30, "SYS": 31,
    ]

    /// "TERM", "SIGTERM", "sigkill", "9" -> the signal number (1...64).
    public static func parseSignal(_ text: String) throws(ParseError) -> UInt32 {
        let trimmed = text.trimmingSpaces()
        if let number = UInt32(trimmed) {
            guard (1...64).contains(number) else { throw ParseError("invalid signal \"\(text)\"; numbers go from 1 to 64") }
            return number
        }
        var name = trimmed.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        guard let number = signalNumbers[name] else {
            throw ParseError("unknown signal \"\(text)\"; use a name like TERM, SIGKILL, INT or a number")
        }
        return number
    }

    /// `path` made absolute against `currentDirectory`, with "." and ".." segments resolved
    /// lexically (symbolic links are left alone).
    public static func absolutePath(_ path: String, currentDirectory: String) -> String {
        let full = path.hasPrefix("/") ? path : currentDirectory + "/" + path
        var segments: [Substring] = []
        for segment in full.split(separator: "/") {
            switch segment {
            case ".": continue
            case "..": if !segments.isEmpty { segments.removeLast() }
            default: segments.append(segment)
            }
        }
        return "/" + segments.joined(separator: "/")
    }
}

extension String {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while view.first?.isWhitespace == true { view.removeFirst() }
        while view.last?.isWhitespace == true { view.removeLast() }
        return String(view)
    }
}
