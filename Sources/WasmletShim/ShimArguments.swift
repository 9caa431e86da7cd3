// Command-line parsing with Go's `flag` package conventions, which is what containerd speaks:
// `-name value`, `-name=value`, `--name` forms, boolean flags without a value, and the action
// (`start`, `delete`) as the first non-flag argument.

public struct ShimArguments: Sendable, Equatable {
    public var namespace = ""
    public var address = ""
    public var publishBinary = ""
    public var id = ""
    public var bundle = ""
    public var debug = false
    public var version = false
    /// `-info` (containerd 2.2+): print RuntimeInfo. A flag, not an action, as containerd runs it.
    public var info = false
    /// "start", "delete", or whatever else was given ("" when none).
    public var action = ""
    /// Arguments after the action (unused, kept for error messages).
    public var rest: [String] = []

    public init() {}

    /// The flags that take a value. Anything else without "=value" is treated as boolean, unless
    /// it is an unknown flag followed by a plain word that is not an action (then that word is
    /// taken as its value, as Go would for a string flag).
    static let valueFlags: Set<String> = ["namespace", "address", "publish-binary", "id", "bundle", "socket"]
    static let actions: Set<String> = ["start", "delete"]

    /// Parses `arguments` without the program name.
    public init(parsing arguments: [String]) {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument != "-" else {
                action = argument
                rest = Array(arguments[index...])
                return
            }
            if argument == "--" {  // end of flags
                if index < arguments.count {
                    action = arguments[index]
                    rest = Array(arguments[(index + 1)...])
                }
                return
            }
            var name = Substring(argument.drop(while: { $0 == "-" }))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = name[..<equals]
            }
            let takesValue: Bool
            if Self.valueFlags.contains(String(name)) {
                takesValue = true
            } else if ["debug", "v", "version", "info"].contains(String(name)) {
                takesValue = false
            } else {
                let next = index < arguments.count ? arguments[index] : nil
                takesValue = next.map { !$0.hasPrefix("-") && !Self.actions.contains($0) } ?? false
            }
            if value == nil && takesValue && index < arguments.count {
                value = arguments[index]
                index += 1
            }
            apply(name: String(name), value: value)
        }
    }

    private mutating func apply(name: String, value: String?) {
        switch name {
        case "namespace": namespace = value ?? ""
        case "address": address = value ?? ""
        case "publish-binary": publishBinary = value ?? ""
        case "id": id = value ?? ""
        case "bundle": bundle = value ?? ""
        case "debug": debug = Self.boolValue(value)
        case "v", "version": version = Self.boolValue(value)
        case "info": info = Self.boolValue(value)
        default: break  // unknown flags are ignored (newer containerd versions add some)
        }
    }

    /// Go's flag accepts -debug, -debug=true, -debug=false, -debug=1, ...
    private static func boolValue(_ value: String?) -> Bool {
        guard let value else { return true }
        return ["1", "t", "T", "true", "TRUE", "True"].contains(value)
    }
}
