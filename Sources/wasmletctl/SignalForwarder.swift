import Dispatch
import Synchronization
import WasmletClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// SIGINT and SIGTERM while `wasmletctl run` has an instance in the daemon.
///
/// It is installed before Create is sent, so that no signal can end wasmletctl while the
/// daemon holds an instance that nobody will stop:
/// - before Start has answered (`.starting`), a signal is only recorded; the run flow then
///   deletes (or kills) the unstarted instance, or kills the started one, itself;
/// - while the guest runs (`.running`), the first signal is forwarded as a Kill with that
///   signal, a second one as KILL;
/// - after `finish` (the guest has exited), a signal ends wasmletctl as usual.
/// A second signal while Create or Start is still outstanding ends wasmletctl at once: a hung
/// daemon must not make Ctrl-C useless.
final class SignalForwarder: @unchecked Sendable {
    enum Phase { case starting, running, finished }
    private struct State {
        var phase = Phase.starting
        var received: [Int32] = []
    }

    private var source: (any DispatchSourceRead)?
    private let state = Mutex(State())
    private let client: WasmletClient
    private let namespace: String
    private let id: String

    /// Why a handler and a pipe, not a DispatchSource signal source: on Linux those read the
    /// signal from a signalfd, which gets a signal only while it is pending, that is, blocked in
    /// the thread the kernel picks; with the disposition SIG_IGN, one that lands on a thread
    /// not blocking it is dropped, and this process has threads made before this (NIO's, the
    /// pumps'). A sigaction handler runs on whichever thread gets the signal, so none is lost;
    /// it only writes the signal's number to a pipe (async-signal-safe), read on a queue.
    init(client: WasmletClient, namespace: String, id: String) {
        self.client = client
        self.namespace = namespace
        self.id = id
        signal(SIGPIPE, SIG_IGN)
        let pipe = SignalPipe.shared
        let source = DispatchSource.makeReadSource(fileDescriptor: pipe.read, queue: DispatchQueue(label: "wasmletctl.signals"))
        source.setEventHandler { [self] in
            for number in pipe.drain() { self.received(number) }
        }
        source.resume()
        self.source = source
        for number in [SIGINT, SIGTERM] { pipe.install(number) }
    }

    private func received(_ number: Int32) {
        let (phase, count) = state.withLock { state in
            state.received.append(number)
            return (state.phase, state.received.count)
        }
        switch phase {
        case .starting:
            guard count > 1 else { return }
            printError("\(namespace)/\(id): interrupted again while the daemon had not answered; it may keep the instance")
            Glibc.exit(128 + number)
        case .running:
            send(count == 1 ? number : SIGKILL)
        case .finished:
            Glibc.exit(128 + number)
        }
    }

    /// The first signal received so far, if any (checked after Create, before Start).
    var pendingSignal: Int32? { state.withLock { $0.received.first } }

    /// Start has answered: from now on signals are forwarded. One that came while Start was
    /// outstanding is forwarded now.
    func running() {
        let pending = state.withLock { state -> Int? in
            state.phase = .running
            return state.received.isEmpty ? nil : state.received.count
        }
        if let pending { send(pending == 1 ? state.withLock { $0.received[0] } : SIGKILL) }
    }

    private func send(_ number: Int32) {
        let (client, namespace, id) = (self.client, self.namespace, self.id)
        Task { try? await client.kill(namespace: namespace, id: id, signal: UInt32(number)) }
    }

    /// The guest is done (or was never started): signals end wasmletctl again.
    func finish() {
        state.withLock { $0.phase = .finished }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        source?.cancel()
        source = nil
    }
}

/// The write end of a pipe that `signalHandler` writes each signal's number to.
private nonisolated(unsafe) var signalPipeWriteEnd: Int32 = -1

/// Runs on whatever thread the kernel picked, between any two instructions: only write(2),
/// which is async-signal-safe, and errno kept as it was.
private let signalHandler: @convention(c) (Int32) -> Void = { number in
    let saved = errno
    var byte = UInt8(truncatingIfNeeded: number)
    _ = write(signalPipeWriteEnd, &byte, 1)
    errno = saved
}

/// The process's one signal pipe, made once (both ends close-on-exec and non-blocking).
private final class SignalPipe: Sendable {
    static let shared = SignalPipe()
    let read: Int32

    private init() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            // No pipe, no forwarding: say so rather than drop Ctrl-C silently.
            printError("wasmletctl: cannot make a pipe for signals: \(String(cString: strerror(errno)))")
            read = -1
            return
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // Non-blocking both ways: the handler must never wait, and the reader drains until empty.
        for fd in fds { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
        read = fds[0]
        signalPipeWriteEnd = fds[1]
    }

    /// Installs the handler for `number` (SA_RESTART, so no other call sees EINTR).
    func install(_ number: Int32) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = signalHandler
        action.sa_flags = SA_RESTART
        sigemptyset(&action.sa_mask)
        sigaction(number, &action, nil)
    }

    /// The signals written since the last call.
    func drain() -> [Int32] {
        var numbers: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(read, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            numbers += buffer[0..<count].map { Int32($0) }
        }
        return numbers
    }
}
