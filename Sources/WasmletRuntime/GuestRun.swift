import Foundation
@_spi(Fuzzing) import WasmKit
import WasmKitWASI
import WASI

/// How one run of a guest ended, before the runtime turns it into an `ExitRecord`.
struct GuestOutcome: Sendable {
    enum Ending: Sendable {
        case exited(Int32)
        case trapped(String)
        case outOfFuel
        /// Stopped by our kill mechanism; the runtime knows whether it was a kill or a deadline.
        case interrupted
        case failedToStart(String)
        /// A slice on the caller's thread (`fuelSlice`) was not enough, or the run would have
        /// waited: nothing of it counts, and it is run again on a guest thread. `ran: false`:
        /// no warm instance was free, so it never began.
        case outgrewSlice(ran: Bool)
    }

    var ending: Ending
    var startedAt: Date?
    var fuelConsumed: UInt64 = 0
    var cpuTimeNanoseconds: UInt64 = 0
    var peakMemoryBytes: UInt64 = 0
    var memoryLimitHit = false
    var memoryBudgetHit = false
}

/// Executes one guest on the calling (dedicated) thread: stdio, WASI bridge, instantiation,
/// `_start`, and the classification of how it ended. The store never leaves this thread.
struct GuestRun {
    /// "No budget" still meters, so consumption can be reported: start from a huge budget.
    static let unlimitedFuel: UInt64 = 1 << 62

    let module: LoadedModule
    let spec: InstanceSpec
    let engine: Engine
    let memoryCap: UInt64
    let interrupter: GuestInterrupter
    let fifoWait: Duration
    /// Where warm instances are taken from and returned to; nil disables reuse.
    let pool: InstancePool?
    let stackBytes: UInt64
    /// Created by the runtime and kept on the instance record, so Stats can read the size of a
    /// running guest's memory while it runs.
    let limiter: MemoryLimiter
    /// Shared with every guest: the count of guests blocked in host calls.
    let counters: LiveCounters
    let hooks: RuntimeHooks
    /// The instance's pre-opened listeners, in the spec's order. Taken out by the run, so
    /// nothing that outlives it (a parked thread keeps its last closure) holds them open.
    var listeners = ListenerHandoff([])
    var maxConnections: UInt32 = 1024
    /// Where CloseIO(stdin) lands (see StdinEnd).
    var stdinEnd: StdinEnd?
    /// A per-request run's in-memory stdio (the HTTP trigger's); spec.stdio is then unused.
    var requestStdio: RequestStdio?
    /// Set for a run on its caller's thread: the most fuel it may use there, and it runs only on
    /// a warm instance and never waits; else it ends as `.outgrewSlice`.
    var fuelSlice: UInt64?

    func execute() -> GuestOutcome {
        let threadStarted = ContinuousClock.now
        var outcome: GuestOutcome
        if fuelSlice != nil {
            // A slice on the caller's thread is never signalled (its interrupter is its own) and
            // never waits, so its wall time is its CPU time, to within preemption. That saves
            // three syscalls per request: the signal mask and two reads of the thread's CPU clock.
            let wallAtStart = GuestInterrupter.monotonicNow()
            outcome = run(limiter: limiter, threadStarted: threadStarted, cpuAtStart: 0)
            outcome.cpuTimeNanoseconds = GuestInterrupter.monotonicNow() &- wallAtStart
        } else {
            GuestInterrupter.unblockOnCurrentThread()
            let cpuAtStart = GuestThread.currentThreadCPUTime()
            outcome = run(limiter: limiter, threadStarted: threadStarted, cpuAtStart: cpuAtStart)
            outcome.cpuTimeNanoseconds = GuestThread.currentThreadCPUTime() &- cpuAtStart
        }
        outcome.peakMemoryBytes = limiter.peakBytes
        outcome.memoryLimitHit = limiter.limitHit
        outcome.memoryBudgetHit = limiter.budgetHit
        return outcome
    }

    private func run(limiter: MemoryLimiter, threadStarted: ContinuousClock.Instant, cpuAtStart: UInt64) -> GuestOutcome {
        let listeners = self.listeners.take()
        let stdio: GuestStdio
        do {
            stdio = try GuestStdio(spec: spec.stdio, fifoWait: fifoWait, stdinEnd: stdinEnd, shouldGiveUp: { interrupter.isKillRequested })
        } catch {
            return GuestOutcome(ending: interrupter.isKillRequested ? .interrupted : .failedToStart(Self.text(error)))
        }
        var environment = spec.environment
        if let cwd = spec.cwd, environment["PWD"] == nil { environment["PWD"] = cwd }
        let firstListenerFd = UInt32(3 + spec.preopens.count)
        if !listeners.isEmpty {
            environment["WASMLET_LISTEN_FDS"] = listeners.indices.map { String(firstListenerFd + UInt32($0)) }.joined(separator: ",")
        }
        let bridge: WASIBridgeToHost
        do {
            bridge = try WASIBridgeToHost(
                args: spec.args, environment: environment,
                preopens: spec.preopens.map { WASIBridgeToHost.Preopen(guestPath: $0.guestPath, hostPath: $0.hostPath) },
                stdin: stdio.stdin, stdout: stdio.stdout, stderr: stdio.stderr)
        } catch {
            return GuestOutcome(ending: .failedToStart("cannot set up WASI (preopens \(spec.preopens.map(\.hostPath))): \(error)"))
        }
        // A bridge released without close() hits a precondition in WasmKit and kills the process.
        defer { try? bridge.close() }

        let readOnlyFds = Set(spec.preopens.indices.filter { spec.preopens[$0].readOnly }.map { UInt32(3 + $0) })
        let host = WASIHost(
            bridge: bridge, interrupter: interrupter, stdio: stdio, readOnlyPreopenFds: readOnlyFds,
            args: spec.args, environment: environment, counters: counters,
            firstListenerFd: firstListenerFd, listeners: listeners, maxConnections: maxConnections,
            preopenCount: spec.preopens.count, preopenHostPaths: spec.preopens.map(\.hostPath))
        // Every connection the guest accepted is closed when its run ends, however it ended.
        defer { host.closeSockets() }
        host.requestStdio = requestStdio
        host.onCallerThread = fuelSlice != nil
        defer { requestStdio?.flushStderr() }

        let warm: WarmInstance
        var reused = false
        if let pooled = pool?.acquire(digest: module.digest, stackBytes: stackBytes) {
            // Same check a fresh instantiation makes against the cap.
            guard (try? limiter.limitMemoryGrowth(to: Int(pooled.memoryBytes))) == true else {
                pool?.release(pooled, digest: module.digest, stackBytes: stackBytes)
                return initialMemoryRefused(pooled.memoryBytes)
            }
            pooled.store.resourceLimiter = limiter
            warm = pooled
            reused = true
        } else if fuelSlice != nil {
            // Instantiating (translating a module) could take the caller's thread for long.
            return GuestOutcome(ending: .outgrewSlice(ran: false))
        } else {
            do {
                // A guest with listeners is a server: it runs as long as its pod and seldom exits
                // cleanly into the pool, so it does not hold a reset snapshot (the non-zero pages
                // of its initial memory, 12 KiB of RSS for httpd) all that time.
                warm = try WarmInstance(module: module, engine: engine, limiter: limiter, reusable: listeners.isEmpty)
            } catch {
                if limiter.limitHit || limiter.budgetHit { return initialMemoryRefused(nil) }
                return GuestOutcome(ending: .failedToStart("instantiation failed: \(Self.text(error))"))
            }
        }
        host.memory = warm.memory
        warm.slot.host = host

        let budget = min(spec.limits.fuel ?? Self.unlimitedFuel, fuelSlice ?? .max)
        warm.store.fuel = Fuel(remaining: budget)
        if let entered = hooks.guestEntered {
            entered(GuestEntry(key: spec.key, instantiateDuration: .now - threadStarted, reusedWarmInstance: reused))
        }
        var outcome = GuestOutcome(ending: .exited(0), startedAt: Date())
        // A slice's interrupter is never signalled: binding it would cost a gettid and a
        // getpriority for nothing.
        let bound = fuelSlice == nil
        if bound { interrupter.bindCurrentThread(fuelCell: warm.fuelCell, cpuAtStart: cpuAtStart) }
        do {
            _ = try warm.entry()
        } catch let exit as WASIExitCode {
            outcome.ending = .exited(Int32(truncatingIfNeeded: exit.code))
        } catch {
            outcome.ending = classify(error)
        }
        if bound { interrupter.unbindCurrentThread() }
        // Unplug this run's host before the instance can reach another thread through the pool:
        // clearing it afterwards (say, in a defer) would pull it out from under the next run.
        warm.slot.host = nil
        let remaining = interrupter.fuelAtKill ?? warm.store.fuel?.remaining ?? 0
        outcome.fuelConsumed = budget >= remaining ? budget - remaining : 0
        // Only a clean exit is reused: a trap or kill may have left the instance mid-anything,
        // and those paths are rare enough not to matter for start latency.
        if case .exited = outcome.ending, let pool, warm.reset() {
            pool.release(warm, digest: module.digest, stackBytes: stackBytes)
        }
        return outcome
    }

    /// The start failure when the limiter refused the module's initial memory.
    private func initialMemoryRefused(_ bytes: UInt64?) -> GuestOutcome {
        if limiter.budgetHit {
            let size = bytes.map { "the module's initial memory of \($0) bytes" } ?? "the module's initial memory"
            return GuestOutcome(
                ending: .failedToStart("node memory budget exhausted: \(size) does not fit"), memoryBudgetHit: true)
        }
        return GuestOutcome(
            ending: .failedToStart("memory cap of \(memoryCap) bytes is below the module's initial memory"), memoryLimitHit: true)
    }

    /// The one place that tells trap reasons apart: WasmKit's `TrapReason` is package-internal,
    /// so its description text is all we can match.
    private func classify(_ error: any Error) -> GuestOutcome.Ending {
        if error is GuestKilled { return .interrupted }
        if error is OutgrewSlice { return .outgrewSlice(ran: true) }
        let text = Self.text(error)
        if text == "out of fuel" {
            if interrupter.isKillRequested { return .interrupted }
            // Out of the slice's fuel, with the guest's own budget not yet spent.
            if let fuelSlice, fuelSlice < (spec.limits.fuel ?? Self.unlimitedFuel) { return .outgrewSlice(ran: true) }
            return .outOfFuel
        }
        if interrupter.isKillRequested { return .interrupted }
        return .trapped(text)
    }

    /// An error's text without WasmKit's "Trap: " prefix or its backtrace.
    static func text(_ error: any Error) -> String {
        if let runtime = error as? RuntimeError { return runtime.message }
        var text = String(describing: error)
        if text.hasPrefix("Trap: ") { text.removeFirst(6) }
        if let newline = text.firstIndex(of: "\n") { text = String(text[..<newline]) }
        return text
    }
}

/// Hands an instance's listeners to its one run.
final class ListenerHandoff: @unchecked Sendable {
    private var sockets: [ListeningSocket]?

    init(_ sockets: [ListeningSocket]) { self.sockets = sockets }

    /// The sockets, once; later calls get none. Only the guest thread calls it.
    func take() -> [ListeningSocket] {
        defer { sockets = nil }
        return sockets ?? []
    }
}
