import Glibc
import Synchronization

/// A task's stdout and stderr FIFOs, held open for writing from Create until the guest exits.
///
/// Why: containerd's client (ctr, the CRI plugin) opens its end of each FIFO in a goroutine that
/// only counts as open once the kernel's open(2) has returned *and* the goroutine has run again.
/// When the task has exited, the client's Delete cancels any FIFO still "opening" and drops what
/// is in it (containerd's cio: "io.Cancel is used to cancel the io goroutine while it is in
/// fifo-opening state"). runc's shim opens the FIFOs at Create, so a process has long started
/// when it exits; a guest that only opened them at its start, printed a line and exited within
/// a millisecond lost that line now and then under load (1 in a few hundred `ctr run --rm` of
/// hello, beside three busy loops). Opening them at Create, as runc's shim does, gives the
/// client's goroutine from Create to the exit instead. The hold is released when the guest has
/// exited (its own descriptors are closed by then), so the client sees end-of-file then and its
/// Delete (which waits for end-of-file before it asks us to delete) is not held up.
final class OutputFIFOHold: Sendable {
    private let descriptors: Mutex<[Int32]>

    private init(_ descriptors: [Int32]) { self.descriptors = Mutex(descriptors) }

    /// Opens each path that is a FIFO for writing, waiting up to `timeout` for its reader (an
    /// open for writing fails with ENXIO until one is there). Paths that are not FIFOs (files,
    /// empty) are the guest's business alone; a FIFO nobody opens in time is left to the guest,
    /// which waits for its reader itself when it starts.
    static func open(_ paths: [String], timeout: Duration = .seconds(2)) async -> OutputFIFOHold {
        var held: [Int32] = []
        for path in Set(paths) where !path.isEmpty && isFIFO(path) {
            let deadline = ContinuousClock.now + timeout
            while true {
                let fd = Glibc.open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if fd >= 0 {
                    held.append(fd)
                    break
                }
                guard errno == ENXIO || errno == EINTR, ContinuousClock.now < deadline else { break }
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        return OutputFIFOHold(held)
    }

    /// Closes what is held; later calls do nothing.
    func release() {
        let held = descriptors.withLock { held in
            defer { held = [] }
            return held
        }
        for fd in held { close(fd) }
    }

    deinit { release() }

    private static func isFIFO(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFIFO
    }
}
