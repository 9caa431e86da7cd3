extension Duration {
    /// Whole nanoseconds, clamped to 0...Int64.max (negative durations count as 0).
    var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let (total, overflow2) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow2 ? .max : total
    }
}

/// "250ms", "1.5s" for error messages.
func describeNanoseconds(_ nanos: Int64) -> String {
    if nanos < 1_000_000 { return "\(nanos)ns" }
    if nanos < 1_000_000_000 { return "\(nanos / 1_000_000)ms" }
    let tenths = nanos / 100_000_000
    return tenths % 10 == 0 ? "\(tenths / 10)s" : "\(tenths / 10).\(tenths % 10)s"
}
