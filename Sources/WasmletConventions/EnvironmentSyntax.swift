/// Guest environment entries, `KEY=VALUE`: the key is everything before the first `=` and must
/// not be empty; the value may be empty or hold more `=`. Used by `wasmletctl run --env`,
/// `wasmlet-run --env`, `wasmletctl image build --env` and the daemon's Create.
public enum EnvironmentSyntax {
    public static func split(_ entry: String) throws(ParseError) -> (key: String, value: String) {
        guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
            throw ParseError("environment entry \"\(entry)\" is not KEY=VALUE")
        }
        return (String(entry[..<equals]), String(entry[entry.index(after: equals)...]))
    }

    /// The entries as a table; a later duplicate wins, as in a shell.
    public static func table(_ entries: [String]) throws(ParseError) -> [String: String] {
        var table: [String: String] = [:]
        for entry in entries {
            let (key, value) = try split(entry)
            table[key] = value
        }
        return table
    }

    /// Checks every entry, for callers that pass them on as they are.
    public static func validate(_ entries: [String]) throws(ParseError) {
        for entry in entries { _ = try split(entry) }
    }
}
