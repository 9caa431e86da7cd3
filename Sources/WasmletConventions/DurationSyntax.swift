/// Durations, one syntax for every program: `wasmletctl run --timeout`, `wasmlet-run
/// --timeout`, `wasmletd --shutdown-grace` / `--status-interval` and their TOML keys, and the
/// `wasmlet.dev/timeout` annotation.
///
/// Go's syntax (what `kubectl` users write): one or more numbers, each with a unit, e.g.
/// `300ms`, `30s`, `1m30s`, `1.5h`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`.
///
/// A number needs its unit: a bare `300` is refused, because it used to mean milliseconds to
/// one program and seconds to another. The one exception is `0`, which needs none. Signs,
/// empty text, unknown units and values past about 292 years are refused too.
public enum DurationSyntax {
    static let units: [(suffix: String, nanoseconds: Int64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("μs", 1_000), ("ms", 1_000_000),
        ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]

    static let example = "e.g. 300ms, 30s, 1m30s (units ns, us, ms, s, m, h)"

    /// The duration `text` means (0 or more).
    public static func parse(_ text: String) throws(ParseError) -> Duration {
        .nanoseconds(try nanoseconds(text))
    }

    /// The duration `text` means in whole milliseconds; a remainder below 1 ms is refused, so
    /// nobody gets a deadline other than the one written.
    public static func parseMilliseconds(_ text: String) throws(ParseError) -> UInt64 {
        let total = try nanoseconds(text)
        guard total % 1_000_000 == 0 else {
            throw ParseError("duration \"\(text)\" is not a whole number of milliseconds (the resolution here)")
        }
        return UInt64(total / 1_000_000)
    }

    static func nanoseconds(_ text: String) throws(ParseError) -> Int64 {
        let trimmed = text.trimmingSpaces()
        guard !trimmed.isEmpty else { throw ParseError("empty duration; write a number with a unit, \(example)") }
        if trimmed == "0" { return 0 }
        if trimmed.first == "-" || trimmed.first == "+" {
            throw ParseError("duration \"\(text)\" has a sign; write a positive duration, \(example)")
        }
        if trimmed.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
            throw ParseError("duration \"\(text)\" has no unit; add a unit, e.g. \(trimmed)ms or \(trimmed)s")
        }
        var rest = trimmed
        var total: Int64 = 0
        let tooLong = ParseError("duration \"\(text)\" is too long; the most is 2562047h")
        while !rest.isEmpty {
            let whole = rest.prefix { $0.isASCII && $0.isNumber }
            rest = rest.dropFirst(whole.count)
            var fraction = Substring()
            if rest.first == "." {
                rest.removeFirst()
                fraction = rest.prefix { $0.isASCII && $0.isNumber }
                rest = rest.dropFirst(fraction.count)
            }
            guard !whole.isEmpty || !fraction.isEmpty else {
                throw ParseError("\"\(text)\" is not a duration; \(example)")
            }
            // The longest unit that matches ("ms" before "m").
            guard let unit = units.filter({ rest.hasPrefix($0.suffix) }).max(by: { $0.suffix.count < $1.suffix.count })
            else {
                let found = rest.prefix { !($0.isASCII && $0.isNumber) }
                throw ParseError(
                    found.isEmpty
                        ? "duration \"\(text)\" has a number without a unit; \(example)"
                        : "duration \"\(text)\" has an unknown unit \"\(found)\"; \(example)")
            }
            rest = rest.dropFirst(unit.suffix.count)
            guard let number = Int64(whole.isEmpty ? "0" : whole) else { throw tooLong }
            let (scaled, overflow) = number.multipliedReportingOverflow(by: unit.nanoseconds)
            guard !overflow else { throw tooLong }
            // The fraction, digit by digit, truncated below a nanosecond.
            var part: Int64 = 0
            var place = unit.nanoseconds
            for digit in fraction {
                place /= 10
                if place == 0 { break }
                part += Int64(digit.wholeNumberValue!) * place
            }
            let (sum, sumOverflow) = total.addingReportingOverflow(scaled)
            guard !sumOverflow else { throw tooLong }
            let (withPart, partOverflow) = sum.addingReportingOverflow(part)
            guard !partOverflow else { throw tooLong }
            total = withPart
        }
        return total
    }
}
