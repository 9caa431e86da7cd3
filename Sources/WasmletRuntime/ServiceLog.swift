import Dispatch
import Glibc
import Synchronization

/// Where a service's per-request runs write their stderr when the service has a stderr path of
/// its own: under containerd the FIFO that `kubectl logs` and `ctr` read. A line is queued and
/// written in order by one serial queue, so a slow log reader never holds a guest or an event
/// loop. Queued bytes are bounded: past `maxQueuedBytes`, or when a write cannot proceed for
/// `writeWait`, lines are dropped, and the next line that gets through is preceded by a note
/// saying how many bytes were lost, so a loss is never silent.
public final class ServiceLog: @unchecked Sendable {
    // @unchecked: `stdio` is written once, in init; the descriptor is used only on `queue`.
    private let stdio: GuestStdio
    private let queue: DispatchQueue
    private let queuedBytes = Atomic<Int>(0)
    private let droppedBytes = Atomic<Int>(0)
    static let maxQueuedBytes = 1 << 20
    static let writeWait: Duration = .seconds(10)

    /// Opens `path` for writing as an instance's stderr is opened (`GuestStdio`: a FIFO waits
    /// for its reader, a file is appended to). Throws INVALID_ARGUMENT when it cannot be.
    init(path: String, label: String) throws {
        stdio = try GuestStdio(spec: StdioSpec(stderr: path), shouldGiveUp: { false })
        let flags = fcntl(stdio.stderr, F_GETFL)
        if flags >= 0 { _ = fcntl(stdio.stderr, F_SETFL, flags | O_NONBLOCK) }
        queue = DispatchQueue(label: "wasmlet.service-log.\(label)")
    }

    /// Queues one line (without its newline); never blocks.
    public func write(line: [UInt8]) {
        let size = line.count + 1
        guard queuedBytes.wrappingAdd(size, ordering: .relaxed).newValue <= Self.maxQueuedBytes else {
            queuedBytes.wrappingSubtract(size, ordering: .relaxed)
            droppedBytes.wrappingAdd(size, ordering: .relaxed)
            return
        }
        queue.async { [self] in
            defer { queuedBytes.wrappingSubtract(size, ordering: .relaxed) }
            let dropped = droppedBytes.exchange(0, ordering: .relaxed)
            if dropped > 0, !writeAll(Array("wasmlet: \(dropped) bytes of this service's stderr were dropped: its log reader did not keep up\n".utf8)) {
                droppedBytes.wrappingAdd(dropped, ordering: .relaxed)
            }
            if !writeAll(line + [0x0A]) { droppedBytes.wrappingAdd(size, ordering: .relaxed) }
        }
    }

    /// Calls `done` once every line queued before it has been written or dropped.
    func flush(_ done: @escaping @Sendable () -> Void) { queue.async(execute: done) }

    private func writeAll(_ bytes: [UInt8]) -> Bool {
        let fd = stdio.stderr
        let clock = ContinuousClock()
        let deadline = clock.now + Self.writeWait
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written > 0 {
                offset += written
                continue
            }
            let error = errno
            guard written < 0, error == EAGAIN || error == EINTR, clock.now < deadline else { return false }
            var wait = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&wait, 1, 100)
        }
        return true
    }
}
