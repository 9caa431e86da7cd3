import CWasmletInterrupt
import Dispatch
import Glibc
import Synchronization

/// The kill switch of one guest run.
///
/// How a kill lands (measured in shared/docs/wasmkit-0.4.2.md):
/// 1. `requestKill` marks the control block and starts re-sending a real-time signal to the
///    guest's thread until the run has ended.
/// 2. The handler (CWasmletInterrupt) runs on that thread and zeroes the store's fuel counter, so
///    the interpreter's next fuel check raises its ordinary "out of fuel" trap and every frame
///    unwinds normally. About 9% of signals land between the interpreter's read and write of the
///    counter and are lost, which is why we re-send.
/// 3. Host functions that block (sleep, stdio reads and writes) wait with `poll`, which the
///    same signal interrupts with EINTR, and they check `isKillRequested` themselves.
///
/// Safety: the handler only touches the block bound to its own thread, and only when that block
/// asks for a kill. The killer signals only while the run is marked alive, under the same lock
/// the run takes to mark itself finished, so no signal is ever sent to a thread that has exited.
final class GuestInterrupter: @unchecked Sendable {
    /// The signal used for kills; chosen once per process.
    static let signalNumber: Int32 = wasmlet_sigrtmin() + 6

    /// Installs the handler; idempotent. Returns an error text when the signal cannot be used.
    static let installation: Result<Void, RuntimeError> = {
        let rc = wasmlet_interrupt_install(signalNumber)
        return rc == 0 ? .success(()) : .failure(RuntimeError(.internal, "cannot install the kill signal handler: errno \(rc)"))
    }()

    /// Unblocks the kill signal on the calling thread. Threads inherit their creator's mask, and
    /// libdispatch workers (which often call `start`) block every asynchronous signal.
    static func unblockOnCurrentThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signalNumber)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    let block: UnsafeMutablePointer<wasmlet_guest_control>
    private struct State {
        var thread: pthread_t?
        var threadID: pid_t = 0
        var cpuAtStart: UInt64 = 0
        var alive = false
        var finished = false
        var resender: DispatchSourceTimer?
        /// When the thread bound (CLOCK_MONOTONIC ns); 0 before.
        var boundAt: UInt64 = 0
        /// The thread's nice value when the run began, and whether it is lowered now.
        var baselineNice: Int32 = 0
        var demoted = false
    }
    private let state = Mutex(State())
    /// Wall-clock time the run has spent blocked in host calls (poll, stdio and socket waits),
    /// and when its current block began (0: not blocked). Written by the guest's thread only.
    private let blockedTotal = Atomic<UInt64>(0)
    private let blockedSince = Atomic<UInt64>(0)
    private static let resendQueue = DispatchQueue(label: "wasmlet.kill-resend", qos: .userInteractive)
    /// A FIFO the guest is opening now (`whileOpeningFIFO`), and the descriptor of its other
    /// end that a kill opened to let that open return (-1: none).
    private let fifoOpen = Mutex<(path: String?, held: Int32)>((nil, -1))

    init() {
        block = .allocate(capacity: 1)
        block.initialize(to: wasmlet_guest_control())
    }

    deinit {
        block.deinitialize(count: 1)
        block.deallocate()
    }

    var isKillRequested: Bool { wasmlet_interrupt_kill_requested(block) != 0 }

    /// Fuel left when the kill was requested, or nil if no kill was requested while in wasm.
    var fuelAtKill: UInt64? {
        guard isKillRequested else { return nil }
        let value = wasmlet_interrupt_fuel_at_kill(block)
        return value == .max ? nil : value
    }

    /// Called on the guest thread before it enters wasm. `cpuAtStart` is the thread's CPU time
    /// when this run began (threads are reused: their clock includes earlier guests).
    func bindCurrentThread(fuelCell: UnsafeMutablePointer<UInt64>, cpuAtStart: UInt64) {
        wasmlet_interrupt_set_fuel_cell(block, fuelCell)
        wasmlet_interrupt_bind(block)
        let killedEarly = state.withLock { state -> Bool in
            state.thread = pthread_self()
            state.threadID = pid_t(wasmlet_gettid())
            state.cpuAtStart = cpuAtStart
            state.alive = true
            state.boundAt = Self.monotonicNow()
            state.baselineNice = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(state.threadID))
            return state.resender != nil || isKillRequested
        }
        // A kill that arrived before the thread was known: zero the fuel ourselves.
        if killedEarly { fuelCell.pointee = 0 }
    }

    /// CPU time the guest's run has used, read from another thread; nil when it is not running.
    /// The clock id is the kernel's per-thread CPU clock for a tid (glibc's
    /// pthread_getcpuclockid builds the same value: CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED).
    func threadCPUTime() -> UInt64? {
        state.withLock { state -> UInt64? in
            guard state.alive, state.threadID > 0 else { return nil }
            let clock = clockid_t((~Int32(state.threadID)) << 3) | 6
            var ts = timespec()
            guard clock_gettime(clock, &ts) == 0 else { return nil }
            return (UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)) &- state.cpuAtStart
        }
    }

    /// Fuel left in the running guest's store, read from another thread; nil when no wasm runs.
    /// Read under the lock `unbindCurrentThread` takes before the store can be released, so the
    /// counter is alive while `alive` holds. After a kill the counter reads 0: use `fuelAtKill`.
    func fuelRemaining() -> UInt64? {
        state.withLock { state -> UInt64? in
            guard state.alive else { return nil }
            let value = wasmlet_interrupt_fuel_remaining(block)
            return value == .max ? nil : value
        }
    }

    /// Called on the guest thread once the call returned. After this no signal is sent for it.
    func unbindCurrentThread() {
        state.withLock { state in
            state.alive = false
            state.finished = true
            state.resender?.cancel()
            state.resender = nil
        }
        wasmlet_interrupt_bind(nil)
        wasmlet_interrupt_set_fuel_cell(block, nil)
    }

    /// Asks the run to stop. Safe from any thread, any number of times.
    func requestKill() {
        wasmlet_interrupt_request_kill(block)
        releaseFIFOOpen()
        state.withLock { state in
            guard !state.finished, state.resender == nil else { return }
            let timer = DispatchSource.makeTimerSource(queue: Self.resendQueue)
            var sent = 0
            // Re-send quickly at first (most kills land on the first or second signal), then back
            // off so a guest stuck in an uninterruptible spot does not cost a core.
            timer.setEventHandler { [weak self] in
                guard let self else { return }
                sent += 1
                self.signalIfAlive()
                if sent == 40 {
                    timer.schedule(deadline: .now() + .milliseconds(1), repeating: .milliseconds(5), leeway: .milliseconds(1))
                }
            }
            timer.schedule(deadline: .now(), repeating: .microseconds(50), leeway: .microseconds(20))
            state.resender = timer
            timer.resume()
        }
    }

    /// Runs `body`, WasmKit's open of the FIFO at `path` (resolved, inside a preopen). Such an
    /// open blocks in the kernel until the FIFO's other end is opened, and swift-system retries
    /// it on EINTR, so the kill signal cannot end it; a kill opens the other end instead, the
    /// open returns, and the run ends there (`WASIHost.pathOpen`). That end is held until `body`
    /// returns, so a kill that comes just before the guest enters open(2) still lets it through.
    func whileOpeningFIFO<T>(_ path: String, _ body: () throws -> T) rethrows -> T {
        fifoOpen.withLock { open in
            open.path = path
            if isKillRequested { open.held = Self.openOtherEnd(path) }
        }
        defer {
            fifoOpen.withLock { open in
                open.path = nil
                if open.held >= 0 { close(open.held) }
                open.held = -1
            }
        }
        return try body()
    }

    private func releaseFIFOOpen() {
        fifoOpen.withLock { open in
            guard let path = open.path, open.held < 0 else { return }
            open.held = Self.openOtherEnd(path)
        }
    }

    /// Both ends at once (O_RDWR never waits on a FIFO); -1 if `path` is no longer a FIFO.
    private static func openOtherEnd(_ path: String) -> Int32 {
        let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return -1 }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFIFO else {
            close(fd)
            return -1
        }
        return fd
    }

    /// Runs `body`, a wait in a host call, counted as time the guest was blocked.
    func whileBlocked<T>(_ body: () throws -> T) rethrows -> T {
        let start = Self.monotonicNow()
        blockedSince.store(start, ordering: .sequentiallyConsistent)
        defer {
            // Total first: a reader in between counts this block twice (it then sees a guest
            // less busy than it is, and looks again later), never not at all.
            blockedTotal.add(Self.monotonicNow() &- start, ordering: .sequentiallyConsistent)
            blockedSince.store(0, ordering: .sequentiallyConsistent)
        }
        return try body()
    }

    /// What the demotion check reads: when the thread bound (nil while it has not, or once the
    /// run ended) and the time blocked so far, both up to `now`.
    func activity(now: UInt64) -> (boundAt: UInt64, blocked: UInt64)? {
        let boundAt = state.withLock { $0.alive ? $0.boundAt : 0 }
        guard boundAt > 0 else { return nil }
        let since = blockedSince.load(ordering: .sequentiallyConsistent)
        let blocked = blockedTotal.load(ordering: .sequentiallyConsistent) &+ (since > 0 && now > since ? now - since : 0)
        return (boundAt, blocked)
    }

    var hasFinished: Bool { state.withLock { $0.finished } }

    /// Lowers the guest thread's scheduling priority (a higher nice value) while it computes,
    /// so CPU-bound guests yield to short ones, or gives it back its priority once it mostly
    /// waits again. Linux applies nice per thread. Giving it back needs CAP_SYS_NICE; without
    /// it the thread stays lowered (and is not reused: see GuestThread).
    func setDemoted(_ demote: Bool, nice: Int32) {
        state.withLock { state in
            guard state.alive, state.threadID > 0, state.demoted != demote else { return }
            let which = __priority_which_t(PRIO_PROCESS.rawValue)
            if setpriority(which, id_t(state.threadID), demote ? nice : state.baselineNice) == 0 { state.demoted = demote }
        }
    }

    static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    private func signalIfAlive() {
        state.withLock { state in
            guard state.alive, let thread = state.thread else { return }
            _ = wasmlet_interrupt_signal(thread, Self.signalNumber)
        }
    }
}
