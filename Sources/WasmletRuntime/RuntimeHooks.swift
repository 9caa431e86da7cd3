import Synchronization

/// What a guest's thread reports the moment it is about to enter its entry point.
public struct GuestEntry: Sendable {
    public var key: InstanceKey
    /// From the start of the guest's thread to `_start` being called: stdio and WASI setup
    /// (including waiting for a FIFO's reader), then the instantiation of the module, or the
    /// reset of a reused instance.
    public var instantiateDuration: Duration
    /// Whether an already translated instance was reused (see `InstancePool`).
    public var reusedWarmInstance: Bool
}

/// Callbacks for an embedder's measurements, so the runtime needs no metrics library.
///
/// They run on the guest's own thread, in the path of every start: they must be quick and
/// must not block or call back into the runtime's lifecycle methods.
public struct RuntimeHooks: Sendable {
    public var guestEntered: (@Sendable (GuestEntry) -> Void)?

    public init(guestEntered: (@Sendable (GuestEntry) -> Void)? = nil) {
        self.guestEntered = guestEntered
    }
}

/// Numbers the guest threads keep current themselves, read without the runtime's lock.
final class LiveCounters: Sendable {
    /// Guests waiting right now inside a blocking WASI call (a sleep in `poll_oneoff`, a read
    /// or write on pipe-like stdio that is not ready).
    private let blocked = Atomic<Int>(0)

    /// Fuel of per-request runs, which have no record to carry it to the runtime's total.
    private let requestFuel = Atomic<UInt64>(0)

    /// Per-request runs tried first on their caller's thread (a slice): answered there, or
    /// thrown away and run again on a guest thread (see `ServiceRuns.run`).
    private let slicesKept = Atomic<UInt64>(0)
    private let slicesOutgrown = Atomic<UInt64>(0)

    var blockedInHostCalls: Int { max(0, blocked.load(ordering: .relaxed)) }
    var requestSlices: (kept: UInt64, outgrown: UInt64) { (slicesKept.load(ordering: .relaxed), slicesOutgrown.load(ordering: .relaxed)) }
    func countSlice(kept: Bool) {
        if kept { slicesKept.wrappingAdd(1, ordering: .relaxed) } else { slicesOutgrown.wrappingAdd(1, ordering: .relaxed) }
    }
    var requestFuelConsumed: UInt64 { requestFuel.load(ordering: .relaxed) }
    func addRequestFuel(_ fuel: UInt64) { requestFuel.wrappingAdd(fuel, ordering: .relaxed) }

    /// Runs `body` counted as blocked.
    func whileBlocked<T>(_ body: () throws -> T) rethrows -> T {
        blocked.add(1, ordering: .relaxed)
        defer { blocked.subtract(1, ordering: .relaxed) }
        return try body()
    }
}
