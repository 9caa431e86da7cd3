/// Sizes in bytes, one syntax for every program: `wasmletctl run --memory`, `wasmlet-run
/// --memory`, `wasmletd --memory-budget` / `--default-memory` and their TOML keys.
///
/// A whole number, optionally followed by a unit (case-insensitive, one space allowed between):
/// - none or `B`: bytes;
/// - `K`, `Ki`, `KiB`: 1024 bytes; `M`, `Mi`, `MiB`: 1024²; `G`, `Gi`, `GiB`: 1024³;
///   `T`, `Ti`, `TiB`: 1024⁴. The single letters have always meant powers of 1024 here.
///
/// `KB`, `MB`, `GB` and `TB` are refused: they mean powers of 1000 to some and of 1024 to
/// others. So are zero, fractions, signs, values past 2⁶⁴−1 bytes and anything else after the
/// number.
public enum ByteSize {
    static let shifts: [String: UInt64] = [
        "": 0, "b": 0,
        "k": 10, "ki": 10, "kib": 10,
        "m": 20, "mi": 20, "mib": 20,
        "g": 30, "gi": 30, "gib": 30,
        "t": 40, "ti": 40, "tib": 40,
    ]

    /// The size `text` means, in bytes (more than 0).
    public static func parse(_ text: String) throws(ParseError) -> UInt64 {
        let trimmed = text.trimmingSpaces()
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        var unit = trimmed.dropFirst(digits.count)
        if unit.first == " " { unit.removeFirst() }
        let lowered = unit.lowercased()
        guard !digits.isEmpty else {
            throw ParseError(
                trimmed.isEmpty ? "empty size; \(example)" : "\"\(text)\" is not a size; \(example)")
        }
        if ["kb", "mb", "gb", "tb"].contains(lowered) {
            let binary = String(unit.prefix(1)).uppercased() + "iB"
            throw ParseError(
                "\"\(text)\" is ambiguous (powers of 1000 or of 1024?); write \(digits)\(binary) for 1024-based units")
        }
        guard let shift = shifts[lowered] else {
            throw ParseError("\"\(text)\" has an unknown unit \"\(unit)\"; \(example)")
        }
        guard let number = UInt64(digits) else { throw ParseError("size \"\(text)\" is too large") }
        guard number > 0 else { throw ParseError("size \"\(text)\" must be more than 0") }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { throw ParseError("size \"\(text)\" is too large") }
        return bytes
    }

    static let example = "write bytes or a whole number with K, M, G or T (powers of 1024; also KiB, MiB, ...), e.g. 65536, 64K, 16MiB, 1G"
}
