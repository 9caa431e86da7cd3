/// One instance's numbers for the per-instance series (labels `namespace` and `id`).
public struct InstanceNumbers: Sendable, Equatable {
    public var namespace: String
    public var id: String
    /// Linear memory now; 0 unless the guest is running.
    public var linearMemoryBytes: UInt64
    public var memoryCapBytes: UInt64
    public var fuelConsumed: UInt64
    public var cpuSeconds: Double

    public init(
        namespace: String, id: String, linearMemoryBytes: UInt64, memoryCapBytes: UInt64, fuelConsumed: UInt64,
        cpuSeconds: Double
    ) {
        self.namespace = namespace
        self.id = id
        self.linearMemoryBytes = linearMemoryBytes
        self.memoryCapBytes = memoryCapBytes
        self.fuelConsumed = fuelConsumed
        self.cpuSeconds = cpuSeconds
    }
}

/// The per-instance families, rendered straight into the scrape at scrape time rather than kept
/// as registered metrics: an instance's series exist exactly while the runtime knows the
/// instance, so a deleted instance's series are gone from the next scrape without any
/// unregistering, and nothing is allocated per instance between scrapes.
enum PerInstanceSeries {
    static let families: [(name: String, type: String, help: String)] = [
        ("wasmlet_instance_linear_memory_bytes", "gauge", "Linear memory of the instance now (0 unless it is running)."),
        ("wasmlet_instance_memory_cap_bytes", "gauge", "Linear-memory cap of the instance (reserved against the node budget while it is live)."),
        ("wasmlet_instance_fuel_consumed_total", "counter", "Fuel units the instance has consumed (final once it exited)."),
        ("wasmlet_instance_cpu_seconds_total", "counter", "CPU time of the instance's guest thread in seconds (final once it exited)."),
    ]

    static let omittedName = "wasmlet_instance_series_omitted"

    /// Appends the families, then the count of instances left out because of the limit.
    /// Everything is appended byte-wise into one buffer (no per-sample strings): 10,000
    /// instances make 40,000 lines, and the scrape of a full node must stay in milliseconds.
    static func render(_ instances: [InstanceNumbers], omitted: Int, into buffer: inout [UInt8]) {
        // Each instance's label set once: `{namespace="…",id="…"} `, as ranges of one array.
        var labels: [UInt8] = []
        var bounds: [Range<Int>] = []
        labels.reserveCapacity(instances.count * 48)
        bounds.reserveCapacity(instances.count)
        for instance in instances {
            let start = labels.count
            labels.append(contentsOf: "{namespace=\"".utf8)
            escape(instance.namespace, into: &labels)
            labels.append(contentsOf: "\",id=\"".utf8)
            escape(instance.id, into: &labels)
            labels.append(contentsOf: "\"} ".utf8)
            bounds.append(start..<labels.count)
        }
        buffer.reserveCapacity(buffer.count + families.count * (labels.count + instances.count * 56) + 2048)
        for (index, family) in families.enumerated() {
            header(family.name, family.type, family.help, into: &buffer)
            for (position, instance) in instances.enumerated() {
                buffer.append(contentsOf: family.name.utf8)
                buffer.append(contentsOf: labels[bounds[position]])
                switch index {
                case 0: append(instance.linearMemoryBytes, into: &buffer)
                case 1: append(instance.memoryCapBytes, into: &buffer)
                case 2: append(instance.fuelConsumed, into: &buffer)
                default: appendSeconds(instance.cpuSeconds, into: &buffer)
                }
                buffer.append(UInt8(ascii: "\n"))
            }
        }
        header(
            omittedName, "gauge",
            "Instances without per-instance series at this scrape, because metrics.per_instance_limit was reached.",
            into: &buffer)
        buffer.append(contentsOf: omittedName.utf8)
        buffer.append(UInt8(ascii: " "))
        append(UInt64(max(0, omitted)), into: &buffer)
        buffer.append(UInt8(ascii: "\n"))
    }

    private static func header(_ name: String, _ type: String, _ help: String, into buffer: inout [UInt8]) {
        buffer.append(contentsOf: "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n".utf8)
    }

    /// Label values escape backslash, double quote and line feed (text format 0.0.4).
    static func escape(_ value: String, into buffer: inout [UInt8]) {
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\""): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\n"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            default: buffer.append(byte)
            }
        }
    }

    /// Decimal digits of `value`, without an intermediate string.
    static func append(_ value: UInt64, into buffer: inout [UInt8]) {
        if value == 0 {
            buffer.append(UInt8(ascii: "0"))
            return
        }
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            buffer.append(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    /// Seconds as a fixed-point decimal with nanosecond precision ("12.000345678"); a value
    /// that does not fit goes through `format`.
    static func appendSeconds(_ value: Double, into buffer: inout [UInt8]) {
        guard value.isFinite, value >= 0, value < 1e9 else {
            buffer.append(contentsOf: format(value).utf8)
            return
        }
        let nanoseconds = UInt64((value * 1e9).rounded())
        append(nanoseconds / 1_000_000_000, into: &buffer)
        var fraction = nanoseconds % 1_000_000_000
        guard fraction != 0 else { return }
        buffer.append(UInt8(ascii: "."))
        var digits = 9
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        var divisor: UInt64 = 1
        for _ in 1..<digits { divisor *= 10 }
        while divisor > 0 {
            buffer.append(UInt8(ascii: "0") + UInt8(fraction / divisor))
            fraction %= divisor
            divisor /= 10
        }
    }

    /// A float in a form Prometheus parses ("0.0125", "1e-06", "NaN", "+Inf").
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        return "\(value)"
    }
}
