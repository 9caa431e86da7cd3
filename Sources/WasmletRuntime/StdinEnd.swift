import Glibc
import Synchronization

/// The end of a guest's input when its stdin is a FIFO: what containerd's CloseIO(stdin) asks
/// for once its client has copied everything it had.
///
/// Why it is needed: a FIFO's reader sees end-of-file in `poll` (POLLHUP) only when a writer
/// opened and closed it since the reader opened. containerd's client opens its writing end in a
/// goroutine and cancels that open when its own input ends first (`ctr run --rm cat </dev/null`),
/// so a writer may never appear, and the guest would wait on its stdin forever.
///
/// How: once both "closed" and "the guest's reader is open" hold, a writer is opened and closed
/// at once. Data already in the pipe is still read; then the guest reads end-of-file. Each side
/// sets its flag and then checks the other's (sequentially consistent), so whichever comes
/// second does it; both doing it is harmless.
final class StdinEnd: Sendable {
    private let closed = Atomic<Bool>(false)
    private let readerOpen = Atomic<Bool>(false)
    /// The FIFO's path, set before `readerOpen` (which publishes it).
    private let path = Mutex<String?>(nil)

    /// Asked for from any thread, before or after the guest started, any number of times.
    func close() {
        closed.store(true, ordering: .sequentiallyConsistent)
        if readerOpen.load(ordering: .sequentiallyConsistent) { hangUp() }
    }

    /// Called on the guest's thread once its reading end of the FIFO at `fifoPath` is open.
    func readerOpened(fifoPath: String) {
        path.withLock { $0 = fifoPath }
        readerOpen.store(true, ordering: .sequentiallyConsistent)
        if closed.load(ordering: .sequentiallyConsistent) { hangUp() }
    }

    /// Opens and closes a writer, so the reader's poll reports POLLHUP once the pipe is empty.
    /// Without a reader (the guest has gone) the open fails with ENXIO, which is fine.
    private func hangUp() {
        guard let fifoPath = path.withLock({ $0 }) else { return }
        let fd = open(fifoPath, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        if fd >= 0 { Glibc.close(fd) }
    }
}
