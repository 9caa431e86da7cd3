import Glibc
import Synchronization

/// A task's stdout and stderr FIFOs, held open for writing from Create until containerd's client
/// has read what the guest wrote to them.
///
/// Why: containerd's client (ctr, the CRI plugin; containerd/fifo under pkg/cio) opens its end of
/// each FIFO in a goroutine, and that end only counts as open once the kernel's open(2) has
/// returned *and* the goroutine has run again to mark it so. On task Delete the client first
/// cancels every FIFO still "opening" (`io.Cancel`: it closes the descriptor the kernel already
/// gave it, unread) and then waits for its copies to reach end-of-file. So an exit reported
/// while a reader is still in that window loses what the guest wrote. runc's shim opens the
/// FIFOs at Create, so a process has long started before it can exit; this hold does the same
/// (and gives the client's goroutine from Create to the exit), but under load even that window
/// was not always enough: a guest that prints a line and exits within a millisecond lost it in
/// 1 of a few hundred `ctr run --rm`.
///
/// So the exit is not reported until the client has *read* everything: `drain` waits until each
/// FIFO's pipe is empty (FIONREAD 0; a reader that has read has been marked open, and io.Cancel
/// no longer touches it) or has no reader at all (POLLERR on our write end: nobody can read it),
/// then closes our descriptors, so the reader sees end-of-file before containerd hears of the exit,
/// which is what runc's shim guarantees too.
final class OutputFIFOHold: Sendable {
    /// The FIFO paths among the task's stdout and stderr.
    private let paths: [String]
    private let descriptors: Mutex<[String: Int32]>

    private init(paths: [String], descriptors: [String: Int32]) {
        self.paths = paths
        self.descriptors = Mutex(descriptors)
    }

    /// Opens each path that is a FIFO for writing, waiting up to `timeout` for its reader (an
    /// open for writing fails with ENXIO until one is there). Paths that are not FIFOs (files,
    /// empty) are the guest's business alone; a FIFO nobody opens in time is left to the guest,
    /// which waits for its reader itself when it starts (`drain` still waits for that reader).
    static func open(_ paths: [String], timeout: Duration = .seconds(2)) async -> OutputFIFOHold {
        let fifos = Array(Set(paths.filter { !$0.isEmpty && isFIFO($0) })).sorted()
        var held: [String: Int32] = [:]
        for path in fifos {
            let deadline = ContinuousClock.now + timeout
            while true {
                let fd = openForWriting(path)
                if fd >= 0 {
                    held[path] = fd
                    break
                }
                guard errno == ENXIO || errno == EINTR, ContinuousClock.now < deadline else { break }
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        return OutputFIFOHold(paths: fifos, descriptors: held)
    }

    /// How `drain` ended, for the log.
    struct Drained: Sendable, Equatable {
        /// FIFOs that still held unread bytes when `timeout` ran out (their reader is stuck).
        var unread: [String] = []
        /// How long the reader took to read what was left, when it had not at once.
        var waited: Duration?
    }

    /// Call once the guest has exited (its own descriptors are closed): waits until containerd's
    /// client has read everything left in each FIFO, or the FIFO has no reader, or `timeout`
    /// passes; then releases the hold. A FIFO the hold could not open at Create (the guest opened
    /// it itself) is opened now, if it still has a reader, to watch it the same way.
    func drain(timeout: Duration = .seconds(10)) async -> Drained {
        var watched = descriptors.withLock { held in
            defer { held = [:] }
            return held
        }
        for path in paths where watched[path] == nil {
            let fd = Self.openForWriting(path)  // ENXIO: no reader, so nothing can still be read
            if fd >= 0 { watched[path] = fd }
        }
        defer { for fd in watched.values { close(fd) } }
        let began = ContinuousClock.now
        let deadline = began + timeout
        var delay = Duration.microseconds(200)
        var looked = false
        while true {
            let pending = watched.filter { Self.hasUnreadBytesAndReader($0.value) }.map(\.key).sorted()
            let waited = looked ? ContinuousClock.now - began : nil
            if pending.isEmpty { return Drained(waited: waited) }
            if ContinuousClock.now >= deadline { return Drained(unread: pending, waited: waited) }
            looked = true
            // The reader shows no sign of reading (no event says "the pipe is now empty"): look again soon.
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(5))
        }
    }

    /// Closes what is held without waiting (a task deleted without having been started, or a
    /// failed Create); later calls, and `drain` after it, find nothing held.
    func release() {
        let held = descriptors.withLock { held in
            defer { held = [:] }
            return held
        }
        for fd in held.values { close(fd) }
    }

    deinit { release() }

    private static func openForWriting(_ path: String) -> Int32 {
        Glibc.open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
    }

    /// Bytes wait in the pipe and someone has it open for reading.
    private static func hasUnreadBytesAndReader(_ fd: Int32) -> Bool {
        var unread: Int32 = 0
        guard ioctl(fd, UInt(FIONREAD), &unread) == 0, unread > 0 else { return false }
        var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        // POLLERR on a write end: no reader is left, so nobody will ever read these bytes.
        return !(poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLERR) != 0)
    }

    private static func isFIFO(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFIFO
    }
}
