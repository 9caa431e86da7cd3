import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Two FIFOs (stdout, stderr) in a fresh 0700 temporary directory. The read ends are opened
/// non-blocking first (so opening never waits for a writer), then a write end of each is held
/// by this process so that reads see EOF only once both we and the daemon have closed theirs.
final class StdioFIFOs: Sendable {
    let directory: String
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
        let stdoutPath = directory + "/stdout"
        let stderrPath = directory + "/stderr"
        var opened: [Int32] = []
        func fail(_ what: String) -> CLIError {
            let reason = String(cString: strerror(errno))
            for fd in opened { close(fd) }
            unlink(stdoutPath); unlink(stderrPath); rmdir(directory)
            return CLIError("cannot \(what): \(reason)")
        }
        for path in [stdoutPath, stderrPath] {
            guard mkfifo(path, 0o600) == 0 else { throw fail("create FIFO \(path)") }
        }
        for path in [stdoutPath, stderrPath] {
            let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw fail("open FIFO \(path)") }
            opened.append(fd)
        }
        for path in [stdoutPath, stderrPath] {
            let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw fail("open FIFO \(path) for writing") }
            opened.append(fd)
        }
        self.directory = directory
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        stdoutRead = opened[0]
        stderrRead = opened[1]
        writers = Mutex([opened[2], opened[3]])
    }

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
        unlink(stdoutPath)
        unlink(stderrPath)
        rmdir(directory)
    }
}

