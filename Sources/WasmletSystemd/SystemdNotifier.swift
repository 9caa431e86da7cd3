#if os(Linux)
import CSystemd
import Glibc

/// What happened to one `sd_notify` message.
public enum NotifyOutcome: Sendable, Equatable {
    /// The datagram was handed to the service manager's socket.
    case sent
    /// `NOTIFY_SOCKET` is unset: the daemon is not running under a service manager that
    /// listens (started by hand, `Type=simple`, a test). Nothing was sent; not an error.
    case notConfigured
    /// Sending failed; `errno` is the positive errno libsystemd reported.
    case failed(errno: Int32)

    /// `true` only for ``sent``.
    public var wasSent: Bool { self == .sent }
}

/// Tells systemd about the daemon's state through the `sd_notify` protocol
/// (`Type=notify` services, `WatchdogSec=`, `NotifyAccess=`).
///
/// Why: `wasmletd.service` is `Type=notify`, so systemd considers the daemon started only
/// after ``ready(status:)``, shows ``status(_:)`` in `systemctl status`, and restarts the
/// daemon when ``watchdog()`` pings stop (see ``Watchdog``).
///
/// Every call goes through libsystemd's `sd_pid_notify_with_fds`, which reads
/// `NOTIFY_SOCKET` at call time, opens a fresh datagram socket, and sends one message.
/// Nothing is cached, so a value is cheap to copy and safe to use from any thread
/// (the watchdog queue, the API's event loops, the main thread at start-up and shutdown).
/// `NOTIFY_SOCKET` is deliberately left in the environment, because the daemon keeps
/// notifying for its whole life; `NotifyAccess=main` in the unit makes systemd ignore
/// anything a child process might send with it.
///
/// The methods never throw: the daemon's hot path must not fail because systemd is absent
/// or busy. Each returns `true` only when the message was sent; ``send(_:fileDescriptors:)``
/// says why not.
public struct SystemdNotifier: Sendable {
    public init() {}

    /// `true` when `NOTIFY_SOCKET` is set, i.e. notifications will be sent somewhere.
    public static var isConfigured: Bool {
        guard let value = getenv("NOTIFY_SOCKET") else { return false }
        return value.pointee != 0
    }

    /// `READY=1`: start-up is complete and the API socket is being served.
    /// With `Type=notify`, `systemctl start` returns and dependants start only after this.
    /// Also the answer that ends a reload begun with ``reloading()``.
    /// - Parameter status: optional `STATUS=` text sent in the same datagram.
    @discardableResult
    public func ready(status: String? = nil) -> Bool {
        var assignments = ["READY=1"]
        if let status { assignments.append("STATUS=\(status)") }
        return send(assignments).wasSent
    }

    /// `STATUS=<text>`: a one-line, human-readable state shown by `systemctl status`.
    /// Newlines in `text` are replaced with spaces (they would end the assignment).
    @discardableResult
    public func status(_ text: String) -> Bool {
        send(["STATUS=\(text)"]).wasSent
    }

    /// `STOPPING=1`: the daemon began shutting down (draining guests), so systemd
    /// reports "deactivating" instead of believing the daemon died.
    @discardableResult
    public func stopping() -> Bool {
        send(["STOPPING=1"]).wasSent
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>` in the same datagram.
    ///
    /// Send when a reload (SIGHUP) starts and follow with ``ready(status:)`` when it is
    /// done. systemd 253+ (`Type=notify-reload`) requires the timestamp in the same message
    /// to match the reload to its request; older versions ignore the extra field and still
    /// wait for `READY=1` after `RELOADING=1`.
    @discardableResult
    public func reloading() -> Bool {
        send(["RELOADING=1", "MONOTONIC_USEC=\(MonotonicClock.nowMicroseconds())"]).wasSent
    }

    /// `WATCHDOG=1`: the keep-alive ping for `WatchdogSec=`. Call it only when the daemon
    /// is known to be making progress; ``Watchdog`` does that on a timer.
    @discardableResult
    public func watchdog() -> Bool {
        send(["WATCHDOG=1"]).wasSent
    }

    /// `EXTEND_TIMEOUT_USEC=<usec>`: asks systemd for `usec` more microseconds before the
    /// current start, stop or reload times out (e.g. while many guests drain on stop).
    /// Has to be repeated before each extension runs out.
    @discardableResult
    public func extendTimeout(usec: UInt64) -> Bool {
        send(["EXTEND_TIMEOUT_USEC=\(usec)"]).wasSent
    }

    /// `MAINPID=<pid>`: tells systemd which process is the service's main process.
    /// Only needed if the daemon ever re-executes or hands over to another process.
    @discardableResult
    public func mainPID(_ pid: pid_t = getpid()) -> Bool {
        send(["MAINPID=\(pid)"]).wasSent
    }

    /// Sends `assignments` (`KEY=value` strings) as one datagram, newline-separated, with
    /// `fileDescriptors` attached (e.g. `FDSTORE=1` + `FDNAME=`); an empty list sends none.
    ///
    /// Newlines inside an assignment are replaced with spaces so one caller's text cannot
    /// forge another assignment. The descriptors are duplicated by the kernel; the caller
    /// keeps ownership of its copies.
    @discardableResult
    public func send(_ assignments: [String], fileDescriptors: [Int32] = []) -> NotifyOutcome {
        // Scalar-wise: as Characters, "\r\n" is one grapheme that a "\n" search misses.
        let state = assignments
            .map { String(String.UnicodeScalarView($0.unicodeScalars.map { $0 == "\n" ? " " : $0 })) }
            .joined(separator: "\n")
        let result: Int32 = fileDescriptors.withUnsafeBufferPointer { fds in
            // pid 0: send as ourselves (no explicit SCM_CREDENTIALS); unset_environment 0:
            // keep NOTIFY_SOCKET, we notify again later.
            sd_pid_notify_with_fds(0, 0, state, fds.baseAddress, UInt32(fds.count))
        }
        if result > 0 { return .sent }
        if result == 0 { return .notConfigured }
        return .failed(errno: -result)
    }
}
#endif
