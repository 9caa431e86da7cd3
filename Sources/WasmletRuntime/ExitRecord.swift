import Foundation

/// Why an instance ended.
public enum ExitReason: String, Sendable, Codable, CaseIterable {
    /// `_start` returned (code 0) or the guest called `proc_exit`.
    case exited
    /// The guest trapped: unreachable, out-of-bounds access, stack exhaustion, ...
    case trapped
    /// The fuel budget ran out.
    case outOfFuel = "out_of_fuel"
    /// The wall-clock deadline passed.
    case deadlineExceeded = "deadline_exceeded"
    /// Someone called kill.
    case killed
    /// The instance never ran its entry point (bad stdio path, memory cap below the module's
    /// initial memory, instantiation error).
    case failedToStart = "failed_to_start"
    /// The daemon died while the instance ran (recorded by the daemon on recovery).
    case daemonRestarted = "daemon_restarted"
}

/// The durable outcome of one instance. The daemon persists it as is.
///
/// Exit-code mapping (also in the README):
/// - exited: the `proc_exit` code, or 0 when `_start` returns;
/// - killed by signal N: 128+N (137 for SIGKILL, 143 for SIGTERM);
/// - deadline exceeded: 137, as if killed with SIGKILL;
/// - trapped or out of fuel: 134 (128+SIGABRT, what a native program that aborts gets);
/// - failed to start: 126 (found but could not be executed, as a shell reports it);
/// - daemon restarted: 137.
public struct ExitRecord: Sendable, Codable, Equatable {
    public var code: Int32
    public var reason: ExitReason
    /// The trap text, the start failure, or empty.
    public var message: String
    /// The signal for `killed`, else 0.
    public var signal: Int32
    public var startedAt: Date?
    public var exitedAt: Date
    public var fuelConsumed: UInt64
    public var cpuTimeNanoseconds: UInt64
    public var peakMemoryBytes: UInt64
    /// Whether a `memory.grow` (or instantiation) was refused by the instance's memory cap.
    public var memoryLimitHit: Bool
    /// Whether a `memory.grow` (or instantiation) was refused because the node memory budget
    /// was exhausted (committed admission), although the instance's own cap had room. Either
    /// flag means the guest ran out of memory; the daemon reports both as an OOM.
    public var memoryBudgetHit: Bool

    public init(
        code: Int32, reason: ExitReason, message: String = "", signal: Int32 = 0, startedAt: Date? = nil,
        exitedAt: Date = Date(), fuelConsumed: UInt64 = 0, cpuTimeNanoseconds: UInt64 = 0,
        peakMemoryBytes: UInt64 = 0, memoryLimitHit: Bool = false, memoryBudgetHit: Bool = false
    ) {
        self.code = code
        self.reason = reason
        self.message = message
        self.signal = signal
        self.startedAt = startedAt
        self.exitedAt = exitedAt
        self.fuelConsumed = fuelConsumed
        self.cpuTimeNanoseconds = cpuTimeNanoseconds
        self.peakMemoryBytes = peakMemoryBytes
        self.memoryLimitHit = memoryLimitHit
        self.memoryBudgetHit = memoryBudgetHit
    }

    /// Whether the guest was refused memory, by its cap or by the node budget.
    public var memoryExhausted: Bool { memoryLimitHit || memoryBudgetHit }

    public static let trapExitCode: Int32 = 134
    public static let failedToStartExitCode: Int32 = 126
    public static func signalExitCode(_ signal: Int32) -> Int32 { 128 + signal }

    /// What the daemon records for an instance that was running when the daemon died.
    public static func daemonRestarted(startedAt: Date?) -> ExitRecord {
        ExitRecord(code: 137, reason: .daemonRestarted, message: "daemon restarted", signal: 9, startedAt: startedAt)
    }
}

extension ExitRecord {
    /// Records written before `memoryBudgetHit` existed lack it: read them as false.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try container.decode(Int32.self, forKey: .code)
        reason = try container.decode(ExitReason.self, forKey: .reason)
        message = try container.decode(String.self, forKey: .message)
        signal = try container.decode(Int32.self, forKey: .signal)
        startedAt = try container.decodeIfPresent(Date.self, forKey: .startedAt)
        exitedAt = try container.decode(Date.self, forKey: .exitedAt)
        fuelConsumed = try container.decode(UInt64.self, forKey: .fuelConsumed)
        cpuTimeNanoseconds = try container.decode(UInt64.self, forKey: .cpuTimeNanoseconds)
        peakMemoryBytes = try container.decode(UInt64.self, forKey: .peakMemoryBytes)
        memoryLimitHit = try container.decode(Bool.self, forKey: .memoryLimitHit)
        memoryBudgetHit = try container.decodeIfPresent(Bool.self, forKey: .memoryBudgetHit) ?? false
    }
}
