import Foundation
import Glibc

/// The host descriptors behind a guest's stdin, stdout and stderr.
///
/// Open order matters with FIFOs (containerd hands the shim FIFOs it reads and writes itself):
/// stdin is opened first and without blocking, since a FIFO reader opened with O_NONBLOCK never
/// waits for a writer; stdout and stderr are then opened for writing, retrying while no reader
/// is there yet (ENXIO) rather than blocking in `open`, so a start can always be abandoned and a
/// reader on the other side is never left hanging on a half-opened set.
struct GuestStdio: ~Copyable {
    let stdin: Int32
    let stdout: Int32
    let stderr: Int32
    /// Whether each descriptor may block (a FIFO, pipe or terminal) and so needs kill-aware waits.
    let mayBlock: (stdin: Bool, stdout: Bool, stderr: Bool)
    private let owned: [Int32]

    /// Shared /dev/null descriptors: 10,000 idle guests should not cost 30,000 descriptors.
    private static let devNullRead: Int32 = open("/dev/null", O_RDONLY | O_CLOEXEC)
    private static let devNullWrite: Int32 = open("/dev/null", O_WRONLY | O_CLOEXEC)

    /// Opens the spec's paths. `shouldGiveUp` is polled while waiting for a FIFO reader.
    init(spec: StdioSpec, fifoWait: Duration = .seconds(10), stdinEnd: StdinEnd? = nil, shouldGiveUp: () -> Bool) throws {
        var owned: [Int32] = []
        func fail(_ message: String) -> RuntimeError {
            for fd in owned { close(fd) }
            return RuntimeError.invalidArgument(message)
        }
        func openInput(_ path: String?) throws -> (Int32, Bool) {
            guard let path else { return (Self.devNullRead, false) }
            let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw fail("stdin \(path): \(String(cString: strerror(errno)))") }
            owned.append(fd)
            var info = stat()
            if let stdinEnd, fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO {
                stdinEnd.readerOpened(fifoPath: path)
            }
            return (fd, try Self.settle(fd))
        }
        func openOutput(_ path: String?, name: String) throws -> (Int32, Bool) {
            guard let path else { return (Self.devNullWrite, false) }
            var info = stat()
            let exists = stat(path, &info) == 0
            if exists && (info.st_mode & S_IFMT) == S_IFIFO {
                let clock = ContinuousClock()
                let deadline = clock.now + fifoWait
                while true {
                    let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                    if fd >= 0 {
                        owned.append(fd)
                        return (fd, try Self.settle(fd))
                    }
                    let error = errno
                    guard error == ENXIO else { throw fail("\(name) \(path): \(String(cString: strerror(error)))") }
                    if shouldGiveUp() || clock.now >= deadline {
                        throw fail("\(name) \(path): no reader opened the FIFO within \(fifoWait)")
                    }
                    usleep(1000)
                }
            }
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else { throw fail("\(name) \(path): \(String(cString: strerror(errno)))") }
            owned.append(fd)
            return (fd, try Self.settle(fd))
        }
        let input = try openInput(spec.stdin)
        let output = try openOutput(spec.stdout, name: "stdout")
        let error = try openOutput(spec.stderr, name: "stderr")
        stdin = input.0
        stdout = output.0
        stderr = error.0
        mayBlock = (input.1, output.1, error.1)
        self.owned = owned
    }

    /// Puts the descriptor back in blocking mode (the WASI bridge expects it) and says whether
    /// it is a kind that can block, so host functions know to wait on it with `poll` first.
    private static func settle(_ fd: Int32) throws -> Bool {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return true }
        let type = info.st_mode & S_IFMT
        return type == S_IFIFO || type == S_IFCHR && isatty(fd) != 0 || type == S_IFSOCK
    }

    deinit {
        for fd in owned { close(fd) }
    }
}
