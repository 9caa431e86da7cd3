import CWasmletInterrupt
import Dispatch
import Glibc
import Synchronization

/// Runs one guest on a thread of its own.
///
/// Why not a Dispatch worker: a guest blocked in a host call (sleep, a stdio read) holds its
/// thread for as long as it waits, because WasmKit calls are synchronous and cannot be suspended.
/// libdispatch's worker pool is finite (64 threads for blocking work), so 10,000 sleeping guests
/// would starve every other guest. A plain pthread per running guest keeps a blocked guest from
/// ever delaying another; it costs a small, mostly untouched stack. Lifecycle, deadlines and
/// kills stay on Dispatch queues (see `WasmletRuntime`).
///
/// Threads are reused: when its guest has ended, a thread parks for up to `idleLifetime` and the
/// next start takes it (at most `maxIdle` park). Creating and tearing down a thread cost the
/// daemon more CPU than running a short guest did. Nothing of a guest stays on its thread: the
/// kill control block is per run and unbound at its end (so a late kill signal finds nothing to
/// do), the signal mask and CPU clock base are set per run, and a thread whose priority was
/// lowered (long-running guests are) goes back to normal priority or is not reused.
///
/// A guest's completion often starts the next guest (an HTTP request waiting for a slot). Then
/// the finishing thread runs it itself, right after its own guest has returned, instead of
/// waking a parked thread and parking: one context switch less per queued request
/// (`finishing(_:)`).
enum GuestThread {
    /// Native stack per guest thread. The interpreter keeps wasm frames on its own heap stack; this
    /// one only holds Swift and WASI host frames.
    static let stackBytes = 512 * 1024
    /// Parked threads waiting for a guest, and how long each waits before it exits.
    static let maxIdle = 16
    static let idleLifetime: DispatchTimeInterval = .seconds(5)

    /// A parked thread: `body` is set by the starter before `wake` is signalled.
    private final class Parked: @unchecked Sendable {
        let wake = DispatchSemaphore(value: 0)
        var body: (() -> Void)?
    }

    private static let idle = Mutex<[Parked]>([])

    /// A guest thread's own record, reachable through `handoverKey` while its loop runs; only
    /// that thread touches it.
    private final class Handover {
        var finishing = false
        var next: (() -> Void)?
    }

    private static let handoverKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "cannot create the guest threads' key")
        return key
    }()

    private static var currentHandover: Handover? {
        pthread_getspecific(handoverKey).map { Unmanaged<Handover>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Runs `completion`, the last thing a guest thread's body does. A guest started from it
    /// (the first one only) runs on this thread once the body has returned.
    static func finishing(_ completion: () -> Void) {
        guard let handover = currentHandover else { return completion() }
        handover.finishing = true
        completion()
        handover.finishing = false
    }

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a parked thread, else a new detached one; throws when the system refuses
    /// a new thread.
    static func spawn(_ body: @escaping () -> Void) throws {
        if let handover = currentHandover, handover.finishing, handover.next == nil {
            handover.next = body
            return
        }
        if let parked = idle.withLock({ $0.popLast() }) {
            parked.body = body
            parked.wake.signal()
            return
        }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackBytes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            nameCurrentThread("wasmlet-guest")
            GuestThread.serve(first: box.body)
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw RuntimeError.resourceExhausted("cannot start a guest thread: \(String(cString: strerror(rc)))")
        }
    }

    /// A guest thread's life: run a guest, park, run the next one handed over, until nobody
    /// hands one over within `idleLifetime` or enough threads are parked already.
    private static func serve(first: @escaping () -> Void) {
        let thread = id_t(wasmlet_gettid())
        let priority = __priority_which_t(PRIO_PROCESS.rawValue)
        // The priority a new thread has (its creator's): each guest starts at it.
        errno = 0
        let baseline = getpriority(priority, thread)
        guard errno == 0 else { return first() }
        let handover = Handover()
        pthread_setspecific(handoverKey, Unmanaged.passUnretained(handover).toOpaque())
        defer { pthread_setspecific(handoverKey, nil) }
        var body = first
        while true {
            body()
            // A long-running guest's thread was demoted; undo that, or retire the thread if this
            // process may not (raising priority again needs CAP_SYS_NICE).
            let restored = getpriority(priority, thread) == baseline || setpriority(priority, thread, baseline) == 0
            // A guest handed over runs here even if the priority could not be restored: it was
            // promised a thread, and it is demoted again if it computes for long.
            if let next = handover.next {
                handover.next = nil
                body = next
                continue
            }
            guard restored else { return }
            let parked = Parked()
            let accepted = idle.withLock { list -> Bool in
                guard list.count < maxIdle else { return false }
                list.append(parked)
                return true
            }
            guard accepted else { return }
            if parked.wake.wait(timeout: .now() + idleLifetime) == .timedOut {
                let withdrawn = idle.withLock { list -> Bool in
                    guard let index = list.firstIndex(where: { $0 === parked }) else { return false }
                    list.remove(at: index)
                    return true
                }
                if withdrawn { return }
                // A starter took this thread just as it timed out: its guest is on the way.
                parked.wake.wait()
            }
            guard let next = parked.body else { return }
            body = next
        }
    }

    /// CPU time consumed by the calling thread so far.
    static func currentThreadCPUTime() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
