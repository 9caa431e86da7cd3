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
    }

    var ending: Ending
    var startedAt: Date?
    var fuelConsumed: UInt64 = 0
    var cpuTimeNanoseconds: UInt64 = 0
    var peakMemoryBytes: UInt64 = 0
    var memoryLimitHit = false
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

    func execute() -> GuestOutcome {
        GuestInterrupter.unblockOnCurrentThread()
        let cpuAtStart = GuestThread.currentThreadCPUTime()
        let limiter = MemoryLimiter(capBytes: memoryCap)
        var outcome = run(limiter: limiter)
        outcome.cpuTimeNanoseconds = GuestThread.currentThreadCPUTime() &- cpuAtStart
        outcome.peakMemoryBytes = limiter.peakBytes
        outcome.memoryLimitHit = limiter.limitHit
        return outcome
    }

    private func run(limiter: MemoryLimiter) -> GuestOutcome {
        let stdio: GuestStdio
        do {
            stdio = try GuestStdio(spec: spec.stdio, fifoWait: fifoWait, shouldGiveUp: { interrupter.isKillRequested })
        } catch {
            return GuestOutcome(ending: interrupter.isKillRequested ? .interrupted : .failedToStart(Self.text(error)))
        }
        var environment = spec.environment
        if let cwd = spec.cwd, environment["PWD"] == nil { environment["PWD"] = cwd }
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
            args: spec.args, environment: environment)
        let store = Store(engine: engine)
        store.resourceLimiter = limiter
        var imports = Imports()
        host.link(into: &imports, store: store)

        let instance: Instance
        let fuelCell: UnsafeMutablePointer<UInt64>
        do {
            instance = try module.module.instantiate(store: store, imports: imports)
            fuelCell = try FuelCell.address(of: store)
        } catch {
            if limiter.limitHit {
                return GuestOutcome(ending: .failedToStart(
                    "memory cap of \(memoryCap) bytes is below the module's initial memory"), memoryLimitHit: true)
            }
            return GuestOutcome(ending: .failedToStart("instantiation failed: \(Self.text(error))"))
        }
        host.memory = instance.exports[memory: "memory"]
        guard let entry = instance.exports[function: "_start"] else {
            return GuestOutcome(ending: .failedToStart("module has no _start export"))
        }

        let budget = spec.limits.fuel ?? Self.unlimitedFuel
        store.fuel = Fuel(remaining: budget)
        var outcome = GuestOutcome(ending: .exited(0), startedAt: Date())
        interrupter.bindCurrentThread(fuelCell: fuelCell)
        do {
            _ = try entry()
        } catch let exit as WASIExitCode {
            outcome.ending = .exited(Int32(truncatingIfNeeded: exit.code))
        } catch {
            outcome.ending = classify(error)
        }
        interrupter.unbindCurrentThread()
        let remaining = interrupter.fuelAtKill ?? store.fuel?.remaining ?? 0
        outcome.fuelConsumed = budget >= remaining ? budget - remaining : 0
        withExtendedLifetime((host, instance)) {}
        return outcome
    }

    /// The one place that tells trap reasons apart: WasmKit's `TrapReason` is package-internal,
    /// so its description text is all we can match.
    private func classify(_ error: any Error) -> GuestOutcome.Ending {
        if error is GuestKilled { return .interrupted }
        let text = Self.text(error)
        if text == "out of fuel" {
            return interrupter.isKillRequested ? .interrupted : .outOfFuel
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
