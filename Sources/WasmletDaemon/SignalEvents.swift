import Dispatch
import Glibc

/// SIGHUP, SIGTERM and SIGINT as an async sequence, so the daemon's main task handles them in
/// order with ordinary code instead of in a signal handler.
///
/// The default actions are turned off first (SIG_IGN), then DispatchSource signal sources
/// (signalfd-like, via the dispatch manager thread) deliver them. Install this before READY=1:
/// a SIGHUP arriving earlier would otherwise terminate the daemon.
/// `@unchecked Sendable`: `sources` is written only in init; cancelling a source is thread-safe.
final class SignalEvents: @unchecked Sendable {
    let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init(_ signals: [Int32] = [SIGHUP, SIGTERM, SIGINT]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        let queue = DispatchQueue(label: "wasmlet.signals")
        var sources: [any DispatchSourceSignal] = []
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    deinit {
        for source in sources { source.cancel() }
    }
}
