#if os(Linux)
import Glibc

/// Reads `CLOCK_MONOTONIC`, the clock systemd uses for `MONOTONIC_USEC=`.
///
/// systemd (253+, `Type=notify-reload`) compares the timestamp sent with `RELOADING=1`
/// against its own monotonic clock to tell a fresh reload from a stale one, so it must be
/// the same clock, not wall time. Safe to call from any thread.
enum MonotonicClock {
    /// Microseconds since an arbitrary, boot-relative epoch.
    static func nowMicroseconds() -> UInt64 {
        var ts = timespec()
        // CLOCK_MONOTONIC cannot fail with a valid pointer.
        _ = clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }
}
#endif
