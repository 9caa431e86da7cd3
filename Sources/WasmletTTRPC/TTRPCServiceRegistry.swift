import NIOCore
import SwiftProtobuf

/// A server-side method implementation: gets the call context and the raw request payload (the
/// serialized request message), returns the serialized response message.
///
/// Runs in its own `Task` (off the event loop), concurrently with the other calls of the same
/// connection. Throw `TTRPCError` to answer with a specific status; any other error is answered
/// INTERNAL with its description. The task is cancelled when the call's deadline passes or the
/// connection closes.
public typealias TTRPCHandler = @Sendable (TTRPCCallContext, [UInt8]) async throws -> [UInt8]

/// A server-side method implementation that runs on the connection's event loop, without a
/// `Task`: for methods that answer at once, or that hand their work to something that calls
/// back (saves two thread hops per call). It must not block. It answers by calling the
/// responder exactly once, from any thread (later answers are ignored). It may return a closure
/// the server calls if the call is abandoned before it answered (deadline passed, connection
/// closed), e.g. to cancel a task it started; nil if there is nothing to stop.
public typealias TTRPCInlineHandler = @Sendable (TTRPCCallContext, [UInt8], TTRPCResponder) -> (@Sendable () -> Void)?

/// How an inline handler answers: a serialized response message, or an error (a `TTRPCError`
/// for a specific status; anything else is INTERNAL with its description).
public struct TTRPCResponder: Sendable {
    private let body: @Sendable (@escaping @Sendable () -> Result<[UInt8], any Error>) -> Void

    init(_ body: @escaping @Sendable (@escaping @Sendable () -> Result<[UInt8], any Error>) -> Void) {
        self.body = body
    }

    /// Answers with `result`.
    public func callAsFunction(_ result: Result<[UInt8], any Error>) { body { result } }

    /// Answers with what `make` returns, called on the connection's event loop: for work such
    /// as serializing a message that should not load the thread that answers (e.g. a writer
    /// thread answering many calls at once).
    public func lazily(_ make: @escaping @Sendable () -> Result<[UInt8], any Error>) { body(make) }
}

/// Maps service name -> method name -> handler. Fill it in before starting the server (it is a
/// value: the server keeps the copy it was given).
public struct TTRPCServiceRegistry: Sendable {
    enum Handler: Sendable {
        case task(TTRPCHandler)
        case inline(TTRPCInlineHandler)
    }

    private var services: [String: [String: Handler]] = [:]

    public init() {}

    /// Registers (or replaces) the handler of `service`/`method`.
    public mutating func register(service: String, method: String, handler: @escaping TTRPCHandler) {
        services[service, default: [:]][method] = .task(handler)
    }

    /// Registers (or replaces) an inline handler of `service`/`method` (see `TTRPCInlineHandler`).
    public mutating func registerInline(service: String, method: String, handler: @escaping TTRPCInlineHandler) {
        services[service, default: [:]][method] = .inline(handler)
    }

    /// Registers an inline handler that speaks SwiftProtobuf messages: decoding the request and
    /// encoding the response happen on the event loop too. A payload that does not decode as
    /// `Request` is answered INVALID_ARGUMENT without calling `handler`.
    public mutating func registerInline<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        handler: @escaping @Sendable (
            TTRPCCallContext, Request, @escaping @Sendable (Result<Response, any Error>) -> Void
        ) -> (@Sendable () -> Void)?
    ) {
        registerInline(service: service, method: method) { context, payload, respond in
            let decoded: Request
            do {
                decoded = try Request(serializedBytes: payload)
            } catch {
                respond(
                    .failure(
                        TTRPCError.invalidArgument(
                            "\(service)/\(method): request is not a valid \(Request.protoMessageName): \(error)")))
                return nil
            }
            return handler(context, decoded) { result in
                respond.lazily {
                    result.flatMap { reply in
                        do {
                            return .success(try reply.serializedBytes())
                        } catch {
                            return .failure(
                                TTRPCError.internal("\(service)/\(method): cannot serialize \(Response.protoMessageName): \(error)"))
                        }
                    }
                }
            }
        }
    }

    /// Registers a handler that speaks SwiftProtobuf messages. A payload that does not decode as
    /// `Request` is answered INVALID_ARGUMENT without calling `handler`.
    public mutating func register<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        handler: @escaping @Sendable (TTRPCCallContext, Request) async throws -> Response
    ) {
        register(service: service, method: method) { context, payload in
            let decoded: Request
            do {
                decoded = try Request(serializedBytes: payload)
            } catch {
                throw TTRPCError.invalidArgument(
                    "\(service)/\(method): request is not a valid \(Request.protoMessageName): \(error)")
            }
            let reply = try await handler(context, decoded)
            do {
                return try reply.serializedBytes()
            } catch {
                throw TTRPCError.internal(
                    "\(service)/\(method): cannot serialize \(Response.protoMessageName): \(error)")
            }
        }
    }

    /// The service names registered.
    public var serviceNames: [String] { services.keys.sorted() }

    /// The method names registered for `service`.
    public func methodNames(of service: String) -> [String] {
        (services[service] ?? [:]).keys.sorted()
    }

    enum Lookup {
        case found(Handler)
        case unknownService
        case unknownMethod
    }

    func lookup(service: String, method: String) -> Lookup {
        guard let methods = services[service] else { return .unknownService }
        guard let handler = methods[method] else { return .unknownMethod }
        return .found(handler)
    }
}
