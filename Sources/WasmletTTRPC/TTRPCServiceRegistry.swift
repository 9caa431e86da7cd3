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

/// Maps service name -> method name -> handler. Fill it in before starting the server (it is a
/// value: the server keeps the copy it was given).
public struct TTRPCServiceRegistry: Sendable {
    private var services: [String: [String: TTRPCHandler]] = [:]

    public init() {}

    /// Registers (or replaces) the handler of `service`/`method`.
    public mutating func register(service: String, method: String, handler: @escaping TTRPCHandler) {
        services[service, default: [:]][method] = handler
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
        case found(TTRPCHandler)
        case unknownService
        case unknownMethod
    }

    func lookup(service: String, method: String) -> Lookup {
        guard let methods = services[service] else { return .unknownService }
        guard let handler = methods[method] else { return .unknownMethod }
        return .found(handler)
    }
}
