import Logging
import SwiftProtobuf
import WasmletTTRPC

/// Every request of both APIs passes through here on its way out: the one place where a call's
/// outcome is mapped to its wire status (`ErrorMapping`), told to the observer (metrics: method,
/// status code, latency) and, where the API asks for it, logged.
package struct RequestInterceptor: Sendable {
    /// Which failed requests are logged (at notice).
    package enum FailureLog: Sendable {
        /// None: wasmletctl shows its user the error; the daemon's log would only repeat it.
        case none
        /// All but NOT_FOUND: nobody else sees what containerd was told (NOT_FOUND is routine:
        /// containerd and CRI probe for tasks that are gone).
        case allButNotFound
    }

    let observer: (any RequestObserver)?
    let logger: Logger
    let failureLog: FailureLog

    package init(observer: (any RequestObserver)?, logger: Logger, failureLog: FailureLog) {
        self.observer = observer
        self.logger = logger
        self.failureLog = failureLog
    }

    /// `method`'s outcome, recorded; a failure comes back as its `TTRPCError`.
    func finish<Value>(_ method: String, since began: ContinuousClock.Instant, _ result: Result<Value, any Error>)
        -> Result<Value, any Error>
    {
        switch result {
        case .success:
            observer?.request(method: method, code: .ok, duration: ContinuousClock.now - began)
            return result
        case .failure(let error):
            let mapped = ErrorMapping.ttrpc(error)
            observer?.request(method: method, code: mapped.code, duration: ContinuousClock.now - began)
            if failureLog == .allButNotFound, mapped.code != .notFound {
                logger.notice(
                    "request failed", metadata: ["method": "\(method)", "code": "\(mapped.code)", "error": "\(mapped.message)"])
            }
            return .failure(mapped)
        }
    }

    /// Registers a handler that runs on the connection's event loop (see `TTRPCInlineHandler`):
    /// it answers through its responder, at once or from whatever thread finishes the work.
    package func registerInline<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        in registry: inout TTRPCServiceRegistry, service: String, method: String, label: String? = nil,
        _ body: @escaping @Sendable (TTRPCCallContext, Request, @escaping InstanceService.Completion<Response>) -> (@Sendable () -> Void)?
    ) {
        let label = label ?? method
        registry.registerInline(service: service, method: method, request: Request.self, response: Response.self) {
            context, request, respond in
            let began = ContinuousClock.now
            return body(context, request) { result in respond(finish(label, since: began, result)) }
        }
    }

    /// Registers a handler that runs in a task of its own: for work that can take long.
    package func register<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        in registry: inout TTRPCServiceRegistry, service: String, method: String, label: String? = nil,
        _ body: @escaping @Sendable (TTRPCCallContext, Request) async throws -> Response
    ) {
        let label = label ?? method
        registry.register(service: service, method: method, request: Request.self, response: Response.self) {
            context, request in
            let began = ContinuousClock.now
            let result: Result<Response, any Error>
            do { result = .success(try await body(context, request)) } catch { result = .failure(error) }
            return try finish(label, since: began, result).get()
        }
    }

    /// Registers a handler that answers with wire bytes it assembled itself (List and Inspect:
    /// see `ListResponseEncoder`), inline or in a task.
    package func registerEncoded<Request: SwiftProtobuf.Message>(
        in registry: inout TTRPCServiceRegistry, service: String, method: String, request: Request.Type, inline: Bool,
        _ body: @escaping @Sendable (Request) throws -> [UInt8]
    ) {
        @Sendable func answer(_ payload: [UInt8]) -> Result<[UInt8], any Error> {
            let began = ContinuousClock.now
            return finish(
                method, since: began,
                Result {
                    let request: Request
                    do {
                        request = try Request(serializedBytes: payload)
                    } catch {
                        throw TTRPCError.invalidArgument(
                            "\(service)/\(method): request is not a valid \(Request.protoMessageName): \(error)")
                    }
                    return try body(request)
                })
        }
        if inline {
            registry.registerInline(service: service, method: method) { _, payload, respond in
                respond(answer(payload))
                return nil
            }
        } else {
            registry.register(service: service, method: method) { _, payload in try answer(payload).get() }
        }
    }
}
