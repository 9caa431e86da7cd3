import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Copies one FIFO to one of our descriptors on a thread of its own, until EOF, or until a
/// grace period after `finish` passes without data (a daemon that keeps its write end open).
final class OutputPump: Sendable {
    private let source: Int32
    private let destination: Int32
    /// Monotonic nanoseconds after which an idle pump stops; 0 while the guest runs.
    private let stopAfter = Atomic<UInt64>(0)
    private let state = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init(source: Int32, destination: Int32) {
        self.source = source
        self.destination = destination
    }

    func start() {
        let thread = Thread { [self] in
            self.pump()
            let waiters = self.state.withLock { state in
                state.done = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
        thread.name = "wasmletctl-pump-\(destination)"
        thread.start()
    }

    /// Returns once the pump has copied everything, or `grace` passed without data.
    func finish(grace: Duration) async {
        let (seconds, attoseconds) = grace.components
        stopAfter.store(
            Self.now() + UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000), ordering: .relaxed)
        await withCheckedContinuation { continuation in
            let alreadyDone = state.withLock { state in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if alreadyDone { continuation.resume() }
        }
    }

    private static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    private func pump() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var outputOpen = true
        while true {
            var descriptor = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 100)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if ready == 0 {
                let deadline = stopAfter.load(ordering: .relaxed)
                if deadline != 0 && Self.now() >= deadline { return }
                continue
            }
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if count == 0 { return }  // EOF: every writer has closed
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return
            }
            if outputOpen {
                outputOpen = buffer.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < count {
                        let written = write(destination, raw.baseAddress! + offset, count - offset)
                        if written < 0 {
                            if errno == EINTR { continue }
                            return false  // e.g. EPIPE: keep draining, stop writing
                        }
                        offset += written
                    }
                    return true
                }
            }
        }
    }
}


/// Copies this process's stdin into the guest's stdin FIFO on a thread of its own, and closes
/// the FIFO's write end at end-of-input, so the guest sees end-of-file.
///
/// The write end is opened only once the daemon has opened the read end (a non-blocking write
/// open fails with ENXIO until then). Opened earlier and closed at once, as an empty input would
/// be, it would leave the daemon a FIFO whose writer came and went before it looked: Linux then
/// never reports end-of-file to a reader that opened it without blocking, and the guest would
/// wait for a writer that never comes.
///
/// Nobody waits for the pump: once the guest has exited, wasmletctl exits whether or not our
/// stdin has ended (a terminal never does), and a write blocked on a full pipe fails with EPIPE
/// once the guest's read end is closed.
enum InputPump {
    static func start(source: Int32, fifo: String) {
        let thread = Thread {
            guard let destination = openWhenRead(fifo) else { return }
            copy(source: source, destination: destination)
            close(destination)
        }
        thread.name = "wasmletctl-stdin"
        thread.start()
    }

    /// Retries the open until a reader is there; the daemon opens the FIFO when the guest starts.
    private static func openWhenRead(_ fifo: String) -> Int32? {
        while true {
            let fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 {
                // Blocking writes from here on: the guest's reading sets our pace.
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
                return fd
            }
            guard errno == ENXIO || errno == EINTR else { return nil }  // e.g. removed: the run is over
            usleep(1_000)
        }
    }

    private static func copy(source: Int32, destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }  // end of input, or an unreadable stdin: EOF either way
            let delivered = buffer.withUnsafeBytes { raw -> Bool in
                var offset = 0
                while offset < count {
                    let written = write(destination, raw.baseAddress! + offset, count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return false  // EPIPE: the guest's end is closed
                    }
                    offset += written
                }
                return true
            }
            guard delivered else { return }
        }
    }
}
