import Dispatch
import WasmletClient
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
