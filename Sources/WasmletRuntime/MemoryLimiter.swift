@_spi(Fuzzing) import WasmKit
import Synchronization

/// Enforces an instance's memory cap on instantiation and on every `memory.grow`, and records
/// the peak size and whether a growth was refused.
///
/// WasmKit consults `store.resourceLimiter` (SPI in 0.4.2, hence the exact version pin) with the
/// desired size in bytes; answering `false` makes `memory.grow` return -1 to the guest, and makes
/// instantiation throw when the module's initial memory is already over the cap.
final class MemoryLimiter: ResourceLimiter, @unchecked Sendable {
    // Called only on the guest's own thread; read by others (Inspect, metrics) as a snapshot.
    private let peak = Atomic<UInt64>(0)
    private let denied = Atomic<Bool>(false)
    let capBytes: UInt64
    /// Used for validation only: allow anything.
    var unlimited = false

    init(capBytes: UInt64) {
        self.capBytes = capBytes
    }

    func limitMemoryGrowth(to desired: Int) throws -> Bool {
        let desired = UInt64(max(0, desired))
        if unlimited || desired <= capBytes {
            peak.max(desired)
            return true
        }
        denied.store(true, ordering: .relaxed)
        return false
    }

    func limitTableGrowth(to desired: Int) throws -> Bool {
        // Tables hold references, 8 bytes each in WasmKit; a million entries is far past any
        // real program and stops a table.grow bomb.
        desired <= 1_000_000 || unlimited
    }

    var peakBytes: UInt64 { peak.load(ordering: .relaxed) }
    var limitHit: Bool { denied.load(ordering: .relaxed) }
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
