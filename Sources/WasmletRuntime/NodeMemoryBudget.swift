import Synchronization

/// How create admits instances against the node memory budget.
public enum MemoryAdmission: String, Sendable, CaseIterable, Codable {
    /// The budget counts what guests commit: each live instance's fixed overhead
    /// (`RuntimeConfiguration.instanceOverheadBytes` plus its interpreter stack) from create,
    /// and its linear memory as it is instantiated and grown. Caps may add up to more than the
    /// budget (overcommit, as a node does with Kubernetes memory limits); a `memory.grow` that
    /// would take the node past the budget returns -1 to the guest, and the exit record says
    /// `memoryBudgetHit`.
    case committed
    /// Each instance's whole memory cap is reserved at create; a create that does not fit is
    /// refused. Growth within a cap then never meets the budget.
    case reserveCaps = "reserve-caps"
}

/// The node memory budget, shared by the runtime (create, exit, delete; under its lock) and by
/// every guest thread (`MemoryLimiter`, on instantiation and each `memory.grow`, without the
/// runtime's lock). One atomic word holds the bytes charged, so a grow costs one
/// compare-and-exchange on it; nothing is taken per wasm instruction.
final class NodeMemoryBudget: Sendable {
    let limitBytes: UInt64
    private let charged = Atomic<UInt64>(0)
    private let denied = Atomic<UInt64>(0)

    init(limitBytes: UInt64) {
        self.limitBytes = limitBytes
    }

    /// Adds `bytes` to the charge if the total stays within the budget; false (and nothing
    /// charged) if it would not.
    func tryCharge(_ bytes: UInt64) -> Bool {
        var current = charged.load(ordering: .relaxed)
        while true {
            let (total, overflow) = current.addingReportingOverflow(bytes)
            guard !overflow, total <= limitBytes else { return false }
            let (exchanged, original) = charged.compareExchange(expected: current, desired: total, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Gives back bytes an earlier `tryCharge` took.
    func release(_ bytes: UInt64) {
        guard bytes > 0 else { return }
        charged.subtract(bytes, ordering: .relaxed)
    }

    /// A guest's growth (or instantiation) was refused because the budget is exhausted.
    func recordDenial() { denied.add(1, ordering: .relaxed) }

    var chargedBytes: UInt64 { charged.load(ordering: .relaxed) }
    var denials: UInt64 { denied.load(ordering: .relaxed) }
}
