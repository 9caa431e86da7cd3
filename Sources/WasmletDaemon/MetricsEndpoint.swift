import Dispatch
import Logging
import NIOCore
import Synchronization
import WasmletMetrics
import WasmletService

/// Where `/metrics`, `/healthz` and `/readyz` are served: the socket-activated descriptor named
/// "metrics", else `metrics_address`, else the loopback default. A configured address that
/// cannot be bound stops the daemon; the default one only costs the endpoint (with an error).
enum MetricsEndpoint {
    static let defaultAddress = "127.0.0.1:9464"

    static func serve(
        activated: CInt?, address: String?, endpoints: MetricsServer.Endpoints, logger: Logger
    ) async throws -> MetricsHandle {
        if let activated {
            let server = try await MetricsServer.adopt(listeningSocket: activated, endpoints: endpoints)
            logger.info("serving metrics on the socket-activated descriptor \(activated)")
            return MetricsHandle(server)
        }
        let chosen = address ?? defaultAddress
        do {
            let server = try await MetricsServer.bind(address: chosen, endpoints: endpoints)
            // The bound port, so that port 0 (a free one) can be found in the log.
            let bound = server.localAddress.flatMap { address -> String? in
                guard let host = address.ipAddress, let port = address.port else { return nil }
                return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            } ?? chosen
            logger.info("serving metrics on http://\(bound)/metrics")
            return MetricsHandle(server)
        } catch {
            if address != nil { throw DaemonError.startup("metrics address \(chosen): \(error)") }
            logger.error("metrics endpoint off: cannot listen on \(chosen): \(error)")
            return MetricsHandle(nil)
        }
    }
}

struct MetricsHandle: Sendable {
    let server: MetricsServer?
    init(_ server: MetricsServer?) { self.server = server }
    func shutdown() async { await server?.shutdown() }
}

/// Ticks the progress probe when no systemd watchdog does, so `/healthz` has a verdict.
/// A dispatch timer of its own (not a Task): a wedged concurrency pool must not stop it.
final class HealthTicker: Sendable {
    private let timer: Mutex<(any DispatchSourceTimer)?>

    init(interval: DispatchTimeInterval, tick: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "wasmletd.health")
        let timer = DispatchSource.makeTimerSource(flags: [], queue: queue)
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler(handler: tick)
        timer.resume()
        self.timer = Mutex(timer)
    }

    func stop() { timer.withLock { $0?.cancel(); $0 = nil } }
}
