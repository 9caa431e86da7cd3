#if canImport(Glibc)
import Glibc
#endif
import Prometheus

/// The standard `process_*` metrics (the names the Prometheus client libraries use), read from
/// /proc at scrape time. swift-prometheus has no process collector, so this is it.
final class ProcessMetrics: Sendable {
    private let cpu: CumulativeCounter
    private let resident: Gauge
    private let virtual: Gauge
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let threads: Gauge
    private let startTime: Gauge

    init(registry: PrometheusCollectorRegistry) {
        func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "process", metricName: name, unitName: unit, helpText: help)
        }
        cpu = CumulativeCounter(registry.makeCounter(descriptor: d("cpu", "seconds_total", "Total user and system CPU time spent in seconds.")))
        resident = registry.makeGauge(descriptor: d("resident_memory", "bytes", "Resident memory size in bytes."))
        virtual = registry.makeGauge(descriptor: d("virtual_memory", "bytes", "Virtual memory size in bytes."))
        openFDs = registry.makeGauge(descriptor: d("open", "fds", "Number of open file descriptors."))
        maxFDs = registry.makeGauge(descriptor: d("max", "fds", "Maximum number of open file descriptors."))
        threads = registry.makeGauge(descriptor: d("threads", "", "Number of OS threads in the process."))
        startTime = registry.makeGauge(descriptor: d("start_time", "seconds", "Start time of the process since unix epoch in seconds."))
    }

    func update() {
        #if os(Linux)
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let stat = Self.read("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
            // Fields after "(comm)": state is field 3, so index i here is field i+3.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            func field(_ number: Int) -> Double? {
                let index = number - 3
                return index < fields.count ? Double(fields[index]) : nil
            }
            if let utime = field(14), let stime = field(15) { cpu.update(total: (utime + stime) / ticks) }
            if let count = field(20) { threads.set(count) }
            if let vsize = field(23) { virtual.set(vsize) }
            if let rss = field(24) { resident.set(rss * pageSize) }
            if let start = field(22), let boot = Self.bootTime() { startTime.set(boot + start / ticks) }
        }
        openFDs.set(Double(Self.countOpenFDs()))
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 { maxFDs.set(Double(limit.rlim_cur)) }
        #endif
    }

    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func bootTime() -> Double? {
        guard let stat = read("/proc/stat") else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingPrefix(while: { $0 == " " }))
        }
        return nil
    }

    private static func countOpenFDs() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != 46 { count += 1 }  // skip "." and ".."
        }
        return max(0, count - 1)  // the descriptor opendir itself holds
    }
}
