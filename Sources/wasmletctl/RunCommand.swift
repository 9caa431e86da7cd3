import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import WasmletAPI
import WasmletClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a module on wasmletd, streaming its output, and exit with its exit code.",
        discussion: """
            The guest's stdout and stderr reach this command through two FIFOs in a private \
            temporary directory (mode 0700, under $TMPDIR or /tmp) whose paths are passed to the \
            daemon, which opens them itself. So the daemon must be able to open files of this \
            user's: that holds when it runs as root (the usual setup) or as the same user. \
            The guest gets no stdin. Ctrl-C or SIGTERM kills the instance (a second one sends \
            KILL). MODULE is a .wasm path (made absolute before sending) or a "sha256:<hex>" \
            digest of a module in the daemon's cache. Everything after MODULE goes to the guest.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("env"), help: ArgumentHelp("Set a guest environment variable (repeatable).", valueName: "KEY=VALUE"))
    var environment: [String] = []

    @Option(name: .customLong("dir"), help: ArgumentHelp("Preopen a host directory: HOST[:GUEST][:ro] (repeatable).", valueName: "MAPPING"))
    var directories: [String] = []

    @Option(help: "Fuel budget (about one unit per wasm operator); default unlimited.")
    var fuel: UInt64?

    @Option(help: "Memory cap; suffixes K, M, G accepted (default: the daemon's).")
    var memory: String?

    @Option(help: "Wall-clock limit: milliseconds, or with a unit (500ms, 30s, 5m, 1h).")
    var timeout: String?

    @Option(help: "Instance id (default: run-<random>).")
    var id: String?

    @Option(name: [.customShort("n"), .long], help: "Namespace.")
    var namespace: String = WasmletClient.defaultNamespace

    @Option(name: [.customShort("l"), .customLong("label")], help: ArgumentHelp("Label the instance (repeatable).", valueName: "KEY=VALUE"))
    var labels: [String] = []

    @Flag(inversion: .prefixedNo, help: "Delete the instance once it has exited.")
    var rm = true

    @Argument(help: "The .wasm module (path or sha256:<hex> digest).")
    var module: String

    @Argument(parsing: .captureForPassthrough, help: "Arguments passed to the guest.")
    var arguments: [String] = []

    func run() async throws {
        let currentDirectory = FileManager.default.currentDirectoryPath
        var request = Wasmlet_V1_CreateRequest()
        try parsed { () throws(ParseError) in
            request.namespace = namespace
            request.id = id ?? "run-" + String(UInt32.random(in: .min ... .max), radix: 16)
            request.labels = try ArgumentParsing.parseLabels(labels)
            request.env = try ArgumentParsing.parseEnvironment(environment)
            request.preopens = try directories.map { mapping throws(ParseError) in
                try ArgumentParsing.parsePreopen(mapping, currentDirectory: currentDirectory)
            }
            var limits = Wasmlet_V1_Limits()
            if let fuel { limits.fuel = fuel }
            if let memory { limits.memoryBytes = try ArgumentParsing.parseBytes(memory) }
            if let timeout { limits.timeoutMs = try ArgumentParsing.parseMilliseconds(timeout) }
            request.limits = limits
            let name: String
            if module.hasPrefix("sha256:") {
                request.digest = module
                name = module
            } else {
                let path = ArgumentParsing.absolutePath(module, currentDirectory: currentDirectory)
                guard access(path, R_OK) == 0 else {
                    throw ParseError("cannot read module \(path): \(String(cString: strerror(errno)))")
                }
                request.path = path
                name = (path as NSString).lastPathComponent
            }
            request.args = [name] + arguments
        }

        let pipes: StdioFIFOs
        do {
            pipes = try StdioFIFOs()
        } catch {
            printError(error.message)
            throw ExitCode.failure
        }
        defer { pipes.remove() }
        request.stdout = pipes.stdoutPath
        request.stderr = pipes.stderrPath

        let key = (namespace: request.namespace, id: request.id)
        let exit = try await withDaemon(global) { client -> Wasmlet_V1_ExitRecord in
            _ = try await client.create(request)
            let pumps = [
                OutputPump(source: pipes.stdoutRead, destination: STDOUT_FILENO),
                OutputPump(source: pipes.stderrRead, destination: STDERR_FILENO),
            ]
            pumps.forEach { $0.start() }
            let forwarder = SignalForwarder(client: client, namespace: key.namespace, id: key.id)
            let exit: Wasmlet_V1_ExitRecord
            do {
                try await client.start(namespace: key.namespace, id: key.id)
                forwarder.armed()
                exit = try await client.wait(namespace: key.namespace, id: key.id)
            } catch {
                forwarder.cancel()
                pipes.closeWriters()
                for pump in pumps { await pump.finish(grace: .milliseconds(500)) }
                if rm { _ = try? await client.delete(namespace: key.namespace, id: key.id) }
                throw error
            }
            forwarder.cancel()
            // Our own write ends kept the reads from seeing EOF before the daemon opened the
            // FIFOs; now the guest is done, drop them and drain what is left.
            pipes.closeWriters()
            for pump in pumps { await pump.finish(grace: .seconds(2)) }
            if rm {
                do {
                    try await client.delete(namespace: key.namespace, id: key.id)
                } catch {
                    printError("warning: could not delete \(key.namespace)/\(key.id): \(error)")
                }
            }
            return exit
        }
        if let summary = InstanceFormatting.exitSummary(exit) {
            printError("\(key.namespace)/\(key.id) \(summary)")
        }
        throw ExitCode(exit.code)
    }
}

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

/// While armed, SIGINT and SIGTERM are forwarded to the instance as a Kill with that signal;
/// a second one sends KILL. Before it is armed (and after `cancel`) they end wasmletctl as usual.
/// `init` and `cancel` are called from the one task that runs the instance.
final class SignalForwarder: @unchecked Sendable {
    private final class Counters: Sendable {
        let received = Atomic<Int>(0)
        let armed = Atomic<Bool>(false)
    }
    private var sources: [any DispatchSourceSignal] = []
    private let counters = Counters()

    init(client: WasmletClient, namespace: String, id: String) {
        signal(SIGPIPE, SIG_IGN)
        let counters = self.counters
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler {
                let nth = counters.received.add(1, ordering: .relaxed).newValue
                guard counters.armed.load(ordering: .relaxed) else { Glibc.exit(128 + number) }
                let sent = UInt32(nth == 1 ? number : SIGKILL)
                Task { try? await client.kill(namespace: namespace, id: id, signal: sent) }
            }
            source.resume()
            sources.append(source)
        }
    }

    func armed() { counters.armed.store(true, ordering: .relaxed) }

    func cancel() {
        counters.armed.store(false, ordering: .relaxed)
        for source in sources { source.cancel() }
        sources = []
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
