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

    private var sources: [any DispatchSourceSignal] = []
    private let state = Mutex(State())
    private let client: WasmletClient
    private let namespace: String
    private let id: String

    init(client: WasmletClient, namespace: String, id: String) {
        self.client = client
        self.namespace = namespace
        self.id = id
        signal(SIGPIPE, SIG_IGN)
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { [self] in self.received(number) }
            source.resume()
            sources.append(source)
        }
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
        for source in sources { source.cancel() }
        sources = []
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
