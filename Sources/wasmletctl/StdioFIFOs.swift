import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The guest's stdio as three FIFOs (stdin, stdout, stderr) in a fresh 0700 temporary
/// directory, whose paths go to the daemon, which opens them itself.
///
/// Output: the read ends are opened non-blocking first (so opening never waits for a writer),
/// then a write end of each is held by this process, so that reads see EOF only once both we
/// and the daemon have closed theirs.
///
/// Input: the FIFO only; the input pump opens its write end once the daemon has opened the read
/// end (see `InputPump`).
final class StdioFIFOs: Sendable {
    let directory: String
    let stdinPath: String
    let stdoutPath: String
    let stderrPath: String
    let stdoutRead: Int32
    let stderrRead: Int32
    private let writers: Mutex<[Int32]>

    init() throws(CLIError) {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/wasmletctl-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw CLIError("cannot create a temporary directory in \(base): \(String(cString: strerror(errno)))")
        }
        let directory = String(cString: made)
        chmod(directory, 0o700)
        let paths = ["stdin", "stdout", "stderr"].map { directory + "/" + $0 }
        var opened: [Int32] = []
        func fail(_ what: String) -> CLIError {
            let reason = String(cString: strerror(errno))
            for fd in opened { close(fd) }
            for path in paths { unlink(path) }
            rmdir(directory)
            return CLIError("cannot \(what): \(reason)")
        }
        for path in paths {
            guard mkfifo(path, 0o600) == 0 else { throw fail("create FIFO \(path)") }
        }
        // Read ends first (a non-blocking read open never waits), then the write ends, which
        // open at once because a reader exists.
        for path in paths.dropFirst() {
            let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw fail("open FIFO \(path)") }
            opened.append(fd)
        }
        for path in paths.dropFirst() {
            let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw fail("open FIFO \(path) for writing") }
            opened.append(fd)
        }
        self.directory = directory
        stdinPath = paths[0]
        stdoutPath = paths[1]
        stderrPath = paths[2]
        stdoutRead = opened[0]
        stderrRead = opened[1]
        writers = Mutex([opened[2], opened[3]])
    }

    /// Drops our write ends of stdout and stderr, so the pumps see EOF once the daemon's are
    /// closed too.
    func closeWriters() {
        writers.withLock { fds in
            for fd in fds { close(fd) }
            fds = []
        }
    }

    /// Closes everything and removes the FIFOs and the directory.
    func remove() {
        closeWriters()
        close(stdoutRead)
        close(stderrRead)
        for path in [stdinPath, stdoutPath, stderrPath] { unlink(path) }
        rmdir(directory)
    }
}
