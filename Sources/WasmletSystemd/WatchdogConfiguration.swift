#if os(Linux)
import CSystemd
import Glibc

/// The service watchdog's timeout (`WatchdogSec=` in the unit), as systemd passes it to
/// the daemon in `WATCHDOG_USEC` (and `WATCHDOG_PID`).
///
/// Why: the ping interval must follow the unit file, not a constant in the daemon, so an
/// operator's drop-in changing `WatchdogSec=` just works. Read it once at start-up on the
/// main thread (it reads the environment) and hand it to ``Watchdog``.
public struct WatchdogConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// The timeout after which systemd kills and restarts the daemon without a ping.
    public let timeoutMicroseconds: UInt64

    /// - Precondition: `timeoutMicroseconds > 0`.
    public init(timeoutMicroseconds: UInt64) {
        precondition(timeoutMicroseconds > 0, "a watchdog timeout must be positive")
        self.timeoutMicroseconds = timeoutMicroseconds
    }

    /// Reads the configuration with `sd_watchdog_enabled`.
    ///
    /// Returns `nil` when the watchdog is off: `WATCHDOG_USEC` unset, or `WATCHDOG_PID` set
    /// to another process (the variables were inherited from a parent and are not meant
    /// for us).
    /// - Parameter unsetEnvironment: remove `WATCHDOG_USEC`/`WATCHDOG_PID` afterwards so
    ///   child processes cannot mistake them for their own. Off by default: `WATCHDOG_PID`
    ///   already protects children, and leaving them keeps the environment inspectable.
    /// - Throws: ``SystemdError`` when the variables are malformed (e.g. a non-numeric
    ///   `WATCHDOG_USEC`); the daemon may log it and run without a watchdog.
    public static func fromEnvironment(unsetEnvironment: Bool = false) throws(SystemdError) -> WatchdogConfiguration? {
        var usec: UInt64 = 0
        let result = sd_watchdog_enabled(unsetEnvironment ? 1 : 0, &usec)
        if result < 0 { throw SystemdError(operation: "sd_watchdog_enabled", returnValue: result) }
        guard result > 0, usec > 0 else { return nil }
        return WatchdogConfiguration(timeoutMicroseconds: usec)
    }

    /// The timeout as a `Duration`.
    public var timeout: Duration { .microseconds(Int64(clamping: timeoutMicroseconds)) }

    /// How often to ping: half the timeout, as sd_watchdog_enabled(3) recommends, so one
    /// late or lost ping does not get a healthy daemon killed.
    public var pingIntervalMicroseconds: UInt64 { max(timeoutMicroseconds / 2, 1) }

    /// ``pingIntervalMicroseconds`` as a `Duration`.
    public var pingInterval: Duration { .microseconds(Int64(clamping: pingIntervalMicroseconds)) }

    public var description: String {
        "watchdog timeout \(timeoutMicroseconds)µs, ping every \(pingIntervalMicroseconds)µs"
    }
}
#endif
