import Glibc

/// Runs one guest on a thread of its own.
///
/// Why not a Dispatch worker: a guest blocked in a host call (sleep, a stdio read) holds its
/// thread for as long as it waits, because WasmKit calls are synchronous and cannot be suspended.
/// libdispatch's worker pool is finite (64 threads for blocking work), so 10,000 sleeping guests
/// would starve every other guest. A plain pthread per running guest keeps a blocked guest from
/// ever delaying another; it costs a small, mostly untouched stack. Lifecycle, deadlines and
/// kills stay on Dispatch queues (see `WasmletRuntime`).
enum GuestThread {
    /// Native stack per guest thread. The interpreter keeps wasm frames on its own heap stack; this
    /// one only holds Swift and WASI host frames.
    static let stackBytes = 512 * 1024

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new detached thread, or throws when the system refuses one.
    static func spawn(_ body: @escaping () -> Void) throws {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackBytes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw RuntimeError.resourceExhausted("cannot start a guest thread: \(String(cString: strerror(rc)))")
        }
    }

    /// CPU time consumed by the calling thread so far.
    static func currentThreadCPUTime() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
