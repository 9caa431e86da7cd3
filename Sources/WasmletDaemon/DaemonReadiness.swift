import Synchronization

/// What `/readyz` and `/healthz` answer over the daemon's life. The HTTP endpoint comes up
/// before the state is recovered, so during a long recovery a probe gets a clear 503
/// "recovering state" instead of a refused connection; `/readyz` turns 200 when READY=1 is
/// sent (the API socket listens, the state is recovered) and 503 again once the drain begins.
final class DaemonReadiness: Sendable {
    enum Phase: Int {
        /// Reading the instance records and replaying the journal.
        case recovering
        /// Recovered; the runtime and the API socket are being set up.
        case starting
        /// READY=1: serving.
        case ready
        /// SIGTERM: refusing new work while running guests wind down.
        case draining
    }

    private let phase = Atomic<Int>(Phase.recovering.rawValue)
    private let probe = Mutex<ProgressProbe?>(nil)

    var current: Phase { Phase(rawValue: phase.load(ordering: .sequentiallyConsistent)) ?? .recovering }

    func set(_ next: Phase) { phase.store(next.rawValue, ordering: .sequentiallyConsistent) }

    /// From here on `/healthz` follows the probe; before (while recovering) it answers 200.
    func attach(_ probe: ProgressProbe) { self.probe.withLock { $0 = probe } }

    /// The body of `/readyz`'s 503; nil when ready.
    var notReadyReason: String? {
        switch current {
        case .recovering: "recovering state"
        case .starting: "starting"
        case .ready: nil
        case .draining: "shutting down"
        }
    }

    /// `/healthz`: the progress probe's latest verdict; healthy while there is no probe yet
    /// (recovery is progress of its own, and the watchdog is not armed before READY=1).
    var isHealthy: Bool { probe.withLock { $0 }?.isHealthy ?? true }
}
