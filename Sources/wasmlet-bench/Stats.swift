import Foundation

/// Order statistics over measured samples (the machines are noisy: quote medians).
struct Samples {
    private(set) var values: [Double] = []

    mutating func add(_ value: Double) { values.append(value) }

    func percentile(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let index = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count - 1)).rounded())))
        return sorted[index]
    }

    var median: Double { percentile(50) }
}

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

func microseconds(_ nanoseconds: Double) -> String { String(format: "%.1f µs", nanoseconds / 1000) }
func milliseconds(_ nanoseconds: Double) -> String { String(format: "%.2f ms", nanoseconds / 1_000_000) }

/// Resident set size of this process, from /proc/self/statm.
func residentBytes() -> UInt64 {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
    return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
}

/// Prints one result line, and keeps it for the Markdown summary.
final class Report: @unchecked Sendable {
    private(set) var rows: [(String, String, String)] = []

    func add(_ figure: String, _ value: String, _ target: String) {
        rows.append((figure, value, target))
        print(String(format: "%-58@ %@   (target: %@)", figure as NSString, value as NSString, target as NSString))
        fflush(nil)
    }

    func markdown() -> String {
        var text = "| figure | measured | target |\n|---|---|---|\n"
        for (figure, value, target) in rows { text += "| \(figure) | \(value) | \(target) |\n" }
        return text
    }
}
