// What containerd wrote on the shim's stdin: BootstrapParams at `start` (2.3+), runtime options
// at `-info` and at 2.0-2.2's `start`, nothing (/dev/null) from 1.x. containerd writes it all
// and closes the pipe, so reading to EOF is the rule; a terminal, or a pipe someone keeps open
// without writing, must not keep `start` waiting, hence the tty check and the deadline.

#if canImport(Glibc)
import Glibc
#endif

enum StandardInput {
    /// containerd's params are a few hundred bytes; anything this big is not for us.
    static let limit = 4 << 20
    /// containerd's write begins as soon as the process runs; this only bounds a stuck caller.
    static let deadlineMilliseconds: Int64 = 2000

    /// Everything up to EOF: empty for a terminal or a closed descriptor; nil when EOF did not
    /// come before the deadline or the input exceeds `limit` (then it is not to be trusted).
    static func readToEnd(fd: Int32 = 0) -> [UInt8]? {
        var info = stat()
        guard fstat(fd, &info) == 0, isatty(fd) == 0 else { return [] }
        let deadline = MonotonicClock.milliseconds() + deadlineMilliseconds
        var result = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16384)
        while result.count <= limit {
            let remaining = deadline - MonotonicClock.milliseconds()
            guard remaining > 0 else { return nil }
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollFD, 1, Int32(remaining))
            if ready < 0 && errno == EINTR { continue }
            guard ready >= 0 else { return result }
            if ready == 0 { return nil }
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard count > 0 else { return result }  // EOF (or an error: nothing more will come)
            result.append(contentsOf: chunk[0..<count])
        }
        return nil
    }
}
