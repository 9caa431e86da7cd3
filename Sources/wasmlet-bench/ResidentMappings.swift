import Foundation

/// Where resident memory lives, by mapping (from /proc/self/smaps), so that a per-instance
/// figure can be taken apart: the heap, thread stacks, guests' linear memories and the
/// engine's own allocations land in mappings of different kinds and sizes.
struct ResidentMappings {
    /// Resident KiB and mapping count by class: a file's path or `[heap]`, or for anonymous
    /// memory "anonymous N KiB" (its size: linear memories, stacks and malloc arenas differ).
    private(set) var classes: [String: (residentKiB: Int, mappings: Int)] = [:]

    /// All mappings of the process: what `vm.max_map_count` bounds.
    var mappingCount: Int { classes.values.reduce(0) { $0 + $1.mappings } }

    static func now() -> ResidentMappings {
        var result = ResidentMappings()
        guard let text = readWhole("/proc/self/smaps") else { return result }
        var current: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), fields.count >= 5, !first.hasSuffix(":") {
                let range = first.split(separator: "-").compactMap { UInt64($0, radix: 16) }
                let sizeKiB = range.count == 2 ? Int((range[1] - range[0]) / 1024) : 0
                current = fields.count >= 6 ? String(fields[5]) : "anonymous \(sizeKiB) KiB \(fields[1])"
                result.classes[current!, default: (0, 0)].mappings += 1
            } else if fields.first == "Rss:", let current, fields.count >= 2, let kiB = Int(fields[1]) {
                result.classes[current, default: (0, 0)].residentKiB += kiB
            }
        }
        return result
    }

    /// A procfs file to its end (Foundation's readers can stop after its first page).
    private static func readWhole(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The classes that grew most from `before` to this reading, per `count` (instances).
    func growth(since before: ResidentMappings, per count: Int, top: Int = 8) -> [String] {
        let grown = classes.map { name, now -> (String, Int, Int) in
            let then = before.classes[name] ?? (0, 0)
            return (name, now.residentKiB - then.residentKiB, now.mappings - then.mappings)
        }.filter { $0.1 != 0 }.sorted { $0.1 > $1.1 }
        return grown.prefix(top).map { name, kiB, mappings in
            String(format: "%7.1f KiB per instance in %@ (%+d mappings)", Double(kiB) / Double(count), name, mappings)
        }
    }
}
