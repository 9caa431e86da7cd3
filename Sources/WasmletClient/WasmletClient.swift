import NIOCore
import SwiftProtobuf
import WasmletAPI
import WasmletTTRPC

/// A typed client for `wasmlet.v1.Runtime`, the API of `wasmletd`, over one ttrpc connection.
///
/// Calls may run concurrently on one client (e.g. a `kill` while a `wait` is pending). Failures
/// are thrown as `WasmletClientError`: `.cannotConnect` when the daemon cannot be reached, and
/// `.status` (carrying the daemon's `TTRPCError`) for everything the daemon answers with an error.
///
/// This module depends on WasmletTTRPC and WasmletAPI only, never on WasmletRuntime, so tools
/// built on it (wasmletctl, the shim) do not link the engine.
public final class WasmletClient: Sendable {
    /// This client library's version, printed by `wasmletctl version`.
    public static let version = "0.1.0"
    /// The namespace used when none is given.
    public static let defaultNamespace = "default"

    /// The socket path connected to.
    public let socketPath: String
    private let connection: TTRPCClient
    /// The connection's event loop (see `TTRPCClient.eventLoop`).
    public var eventLoop: any EventLoop { connection.eventLoop }

    private init(socketPath: String, connection: TTRPCClient) {
        self.socketPath = socketPath
        self.connection = connection
    }

    /// Connects to `wasmletd` at `socketPath` (see `WasmletSocketPath.resolve` for the usual one).
    /// Throws `WasmletClientError.cannotConnect` when nothing listens there or the socket cannot
    /// be opened.
    public static func connect(socketPath: String) async throws(WasmletClientError) -> WasmletClient {
        do {
            let connection = try await TTRPCClient.connect(unixSocketPath: socketPath)
            return WasmletClient(socketPath: socketPath, connection: connection)
        } catch let error as TTRPCError {
            throw .cannotConnect(socketPath: socketPath, reason: ConnectFailure(error))
        } catch {
            throw .cannotConnect(socketPath: socketPath, reason: .other(String(describing: error)))
        }
    }

    /// One unary call of the Runtime service. Non-OK statuses are thrown as `.status`.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: RPCMethod<Request, Response>,
        _ request: Request,
        timeout: Duration? = nil
    ) async throws(WasmletClientError) -> Response {
        do {
            return try await connection.call(
                service: method.service, method: method.method, request: request,
                responseType: Response.self, timeout: timeout)
        } catch let error as TTRPCError {
            throw .status(error)
        } catch {
            throw .status(TTRPCError.unknown(String(describing: error)))
        }
    }

    /// Creates an instance (left in STATE_CREATED) and returns it.
    public func create(_ request: Wasmlet_V1_CreateRequest) async throws(WasmletClientError) -> Wasmlet_V1_Instance {
        try await call(WasmletRuntimeAPI.create, request).instance
    }

    /// Starts a created instance.
    @discardableResult
    public func start(namespace: String = defaultNamespace, id: String) async throws(WasmletClientError)
        -> Wasmlet_V1_Instance
    {
        try await call(WasmletRuntimeAPI.start, .with { $0.namespace = namespace; $0.id = id }).instance
    }

    /// Blocks until the instance has exited; returns its exit record.
    public func wait(namespace: String = defaultNamespace, id: String) async throws(WasmletClientError)
        -> Wasmlet_V1_ExitRecord
    {
        try await call(WasmletRuntimeAPI.wait, .with { $0.namespace = namespace; $0.id = id }).exit
    }

    /// Ends a running instance with `signal` (a POSIX number; 0 is taken as 9 by the daemon).
    public func kill(namespace: String = defaultNamespace, id: String, signal: UInt32 = 15)
        async throws(WasmletClientError)
    {
        _ = try await call(
            WasmletRuntimeAPI.kill, .with { $0.namespace = namespace; $0.id = id; $0.signal = signal })
    }

    /// Forgets a created or exited instance; returns its exit record if it had one.
    @discardableResult
    public func delete(namespace: String = defaultNamespace, id: String) async throws(WasmletClientError)
        -> Wasmlet_V1_ExitRecord?
    {
        let reply = try await call(WasmletRuntimeAPI.delete, .with { $0.namespace = namespace; $0.id = id })
        return reply.hasExit ? reply.exit : nil
    }

    public func inspect(namespace: String = defaultNamespace, id: String) async throws(WasmletClientError)
        -> Wasmlet_V1_Instance
    {
        try await call(WasmletRuntimeAPI.inspect, .with { $0.namespace = namespace; $0.id = id }).instance
    }

    /// Instances in `namespace` ("" = all) carrying every label in `labelSelector`.
    public func list(namespace: String = "", labelSelector: [String: String] = [:])
        async throws(WasmletClientError) -> [Wasmlet_V1_Instance]
    {
        try await call(
            WasmletRuntimeAPI.list, .with { $0.namespace = namespace; $0.labelSelector = labelSelector }
        ).instances
    }

    public func stats() async throws(WasmletClientError) -> Wasmlet_V1_StatsResponse {
        try await call(WasmletRuntimeAPI.stats, Wasmlet_V1_StatsRequest())
    }

    public func version() async throws(WasmletClientError) -> Wasmlet_V1_VersionResponse {
        try await call(WasmletRuntimeAPI.version, Wasmlet_V1_VersionRequest())
    }

    /// False once the connection has closed.
    public var isConnected: Bool { connection.isConnected }

    public func close() async {
        await connection.close()
    }
}
