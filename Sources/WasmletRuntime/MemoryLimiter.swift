@_spi(Fuzzing) import WasmKit
import Synchronization

/// Enforces an instance's memory cap on instantiation and on every `memory.grow`, charges the
/// growth to the node budget under committed admission, and records the peak size and whether
/// a growth was refused (by the cap, or by the node budget).
///
/// WasmKit consults `store.resourceLimiter` (SPI in 0.4.2, hence the exact version pin) with the
/// desired size in bytes; answering `false` makes `memory.grow` return -1 to the guest, and makes
/// instantiation throw when the module's initial memory is already over the cap. A module has
/// one memory (multi-memory is off and memories cannot be imported), so the desired size is that
/// memory's new size and the bytes to charge are its difference from what is charged already.
final class MemoryLimiter: ResourceLimiter, @unchecked Sendable {
    // Changed only on the guest's own thread (and by `releaseCharge`); read by others (Inspect,
    // metrics) as a snapshot.
    private let peak = Atomic<UInt64>(0)
    private let denied = Atomic<Bool>(false)
    private let budgetDenied = Atomic<Bool>(false)
    /// Linear memory charged to `budget`, or `Self.released` once the instance has ended.
    private let charged = Atomic<UInt64>(0)
    private static let released = UInt64.max
    let capBytes: UInt64
    /// Where growth is charged (committed admission); nil when the whole cap was reserved at
    /// create (reserve-caps admission), so growth within the cap needs no charge.
    let budget: NodeMemoryBudget?
    /// Used for validation only: allow anything.
    var unlimited = false

    init(capBytes: UInt64, budget: NodeMemoryBudget? = nil) {
        self.capBytes = capBytes
        self.budget = budget
    }

    func limitMemoryGrowth(to desired: Int) throws -> Bool {
        let desired = UInt64(max(0, desired))
        if unlimited {
            peak.max(desired)
            return true
        }
        guard desired <= capBytes else {
            denied.store(true, ordering: .relaxed)
            return false
        }
        if let budget, !charge(upTo: desired, budget) { return false }
        peak.max(desired)
        return true
    }

    /// Charges the growth from what is charged now to `desired`. Only the guest's thread calls
    /// this, so `charged` changes under it only when `releaseCharge` ends the instance.
    private func charge(upTo desired: UInt64, _ budget: NodeMemoryBudget) -> Bool {
        let current = charged.load(ordering: .relaxed)
        // Ended (a thread abandoned after a kill that did not land): no more growth.
        guard current != Self.released else { return false }
        guard desired > current else { return true }
        let delta = desired - current
        guard budget.tryCharge(delta) else {
            budgetDenied.store(true, ordering: .relaxed)
            budget.recordDenial()
            return false
        }
        if charged.compareExchange(expected: current, desired: desired, ordering: .relaxed).exchanged { return true }
        budget.release(delta)
        return false
    }

    /// Gives the charged linear memory back to the budget; later growth is refused. Idempotent.
    func releaseCharge() {
        let previous = charged.exchange(Self.released, ordering: .relaxed)
        if previous != Self.released { budget?.release(previous) }
    }

    var peakBytes: UInt64 { peak.load(ordering: .relaxed) }
    /// A growth or the instantiation was refused by the instance's own cap.
    var limitHit: Bool { denied.load(ordering: .relaxed) }
    /// A growth or the instantiation was refused because the node budget was exhausted.
    var budgetHit: Bool { budgetDenied.load(ordering: .relaxed) }

    func limitTableGrowth(to desired: Int) throws -> Bool {
        // Tables hold references, 8 bytes each in WasmKit; a million entries is far past any
        // real program and stops a table.grow bomb.
        desired <= 1_000_000 || unlimited
    }
}

extension Atomic where Value == UInt64 {
    func max(_ candidate: UInt64) {
        var current = load(ordering: .relaxed)
        while candidate > current {
            let (exchanged, original) = compareExchange(expected: current, desired: candidate, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}
