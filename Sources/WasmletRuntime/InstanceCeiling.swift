import Foundation
import Glibc

/// How many more guests this process can hold before the kernel refuses it a thread or a memory
/// mapping. Past that point Swift's allocator and the engine abort the whole process (a failed
/// mmap is a fatal error, not a thrown one), and every guest on the node dies at once; so the
/// runtime refuses creates before it, and says which kernel limit it is.
///
/// Each live guest holds one thread (its stack is two mappings: the stack and its guard page)
/// and, for a memory over malloc's mmap threshold, one more mapping: `wasmlet-bench --only
/// density` measured 2.06 mappings per sleeper, and httpd (a 2 MiB memory) holds three.
public struct InstanceCeiling: Sendable, Equatable, CustomStringConvertible {
    /// Most live instances (created, running, and request runs) the process can hold.
    public var instances: Int
    /// The limit that sets it, as the operator would raise it: "vm.max_map_count=65530".
    public var limit: String

    public init(instances: Int, limit: String) {
        self.instances = instances
        self.limit = limit
    }

    public var description: String { "\(instances) instances (\(limit))" }

    static let mappingsPerInstance = 3
    static let threadsPerInstance = 1

    /// The kernel's limits as read at one moment, and what is already used of each.
    public struct Limits: Sendable {
        /// vm.max_map_count, and this process's mappings now.
        public var maxMapCount: Int?
        public var mappingsInUse: Int
        /// Threads on the whole node: the smaller of kernel.threads-max and kernel.pid_max
        /// (every thread takes a pid), and the threads that exist now.
        public var systemThreadsMax: Int?
        public var systemThreadsInUse: Int
        /// The cgroup's pids.max (systemd's TasksMax) and pids.current, when there is one.
        public var cgroupPidsMax: Int?
        public var cgroupPidsInUse: Int
        /// What the limits are named in the message, in the order above.
        public var names: (mappings: String, threads: String, cgroup: String)

        public init(
            maxMapCount: Int?, mappingsInUse: Int, systemThreadsMax: Int?, systemThreadsInUse: Int,
            cgroupPidsMax: Int?, cgroupPidsInUse: Int,
            names: (mappings: String, threads: String, cgroup: String) = ("vm.max_map_count", "kernel.pid_max", "pids.max")
        ) {
            self.maxMapCount = maxMapCount
            self.mappingsInUse = mappingsInUse
            self.systemThreadsMax = systemThreadsMax
            self.systemThreadsInUse = systemThreadsInUse
            self.cgroupPidsMax = cgroupPidsMax
            self.cgroupPidsInUse = cgroupPidsInUse
            self.names = names
        }
    }

    /// The smallest headroom over every known limit, each less a reserve of a tenth (at least
    /// 256) for what the rest of the daemon and the node need: event loops, Dispatch's
    /// threads, malloc's arenas, other processes. nil when no limit is known.
    public static func from(_ limits: Limits) -> InstanceCeiling? {
        func headroom(_ max: Int?, _ used: Int, per: Int, _ name: String) -> InstanceCeiling? {
            guard let max else { return nil }
            let reserve = Swift.max(256, max / 10)
            return InstanceCeiling(instances: Swift.max(0, (max - used - reserve) / per), limit: "\(name)=\(max)")
        }
        let candidates = [
            headroom(limits.maxMapCount, limits.mappingsInUse, per: mappingsPerInstance, limits.names.mappings),
            headroom(limits.systemThreadsMax, limits.systemThreadsInUse, per: threadsPerInstance, limits.names.threads),
            headroom(limits.cgroupPidsMax, limits.cgroupPidsInUse, per: threadsPerInstance, limits.names.cgroup),
        ].compactMap { $0 }
        return candidates.min { $0.instances < $1.instances }
    }

    /// The ceiling for this process now, from /proc and its cgroup.
    public static func ofThisProcess() -> InstanceCeiling? { from(readLimits()) }

    static func readLimits() -> Limits {
        let threadsMax = readInteger("/proc/sys/kernel/threads-max")
        let pidMax = readInteger("/proc/sys/kernel/pid_max")
        let systemThreadsMax: Int?
        let threadsName: String
        switch (threadsMax, pidMax) {
        case let (threads?, pids?): (systemThreadsMax, threadsName) = pids <= threads ? (pids, "kernel.pid_max") : (threads, "kernel.threads-max")
        case let (threads?, nil): (systemThreadsMax, threadsName) = (threads, "kernel.threads-max")
        case let (nil, pids): (systemThreadsMax, threadsName) = (pids, "kernel.pid_max")
        }
        // /proc/loadavg's fourth field is running/total scheduling entities: every thread.
        let loadavg = readText("/proc/loadavg")?.split(separator: " ")
        let systemThreads = loadavg.flatMap { $0.count > 3 ? $0[3].split(separator: "/").last.flatMap { Int($0) } : nil } ?? 0
        let cgroup = cgroupDirectory()
        let mappings = readText("/proc/self/maps").map { $0.utf8.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 } } ?? 0
        return Limits(
            maxMapCount: readInteger("/proc/sys/vm/max_map_count"), mappingsInUse: mappings,
            systemThreadsMax: systemThreadsMax, systemThreadsInUse: systemThreads,
            cgroupPidsMax: cgroup.flatMap { readInteger("\($0)/pids.max") },  // "max" reads as nil: no limit
            cgroupPidsInUse: cgroup.flatMap { readInteger("\($0)/pids.current") } ?? 0,
            names: ("vm.max_map_count", threadsName, cgroup.map { "\($0)/pids.max" } ?? "pids.max"))
    }

    /// This process's cgroup v2 directory (the "0::" line of /proc/self/cgroup), if mounted.
    private static func cgroupDirectory() -> String? {
        guard let text = readText("/proc/self/cgroup"),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") })
        else { return nil }
        let directory = "/sys/fs/cgroup" + line.dropFirst(3)
        return FileManager.default.fileExists(atPath: directory) ? directory : nil
    }

    private static func readInteger(_ path: String) -> Int? {
        readText(path).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// A procfs or sysfs file to its end (Foundation's readers can stop after its first page).
    private static func readText(_ path: String) -> String? {
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
}
