import WasmletAPI
import WasmletConventions

/// Parsers for the values only `wasmletctl` (and other clients) take on the command line; sizes,
/// durations, env and preopen mappings are WasmletConventions', shared with every program.
public enum ArgumentParsing {
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
}

extension String {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while view.first?.isWhitespace == true { view.removeFirst() }
        while view.last?.isWhitespace == true { view.removeLast() }
        return String(view)
    }
}
