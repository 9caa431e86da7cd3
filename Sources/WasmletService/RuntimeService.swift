import Foundation
import Logging
import WasmletAPI
import WasmletRuntime
import WasmletStore
import WasmletTTRPC

/// `wasmlet.v1.Runtime` (wasmletctl's API): decodes each request into an `InstanceService`
/// call and encodes its answer. What the calls do, and their durability rule, is the instance
/// service's; this type only translates (with `MessageMapping`) and picks where each method runs.
///
/// Most methods run inline on the connection's event loop (`TTRPCInlineHandler`): they
/// answer at once (Start, Inspect, Kill, Stats, Version, a Wait for an instance that has
/// exited) or hand the record to the store and answer from its writer thread (Create,
/// Delete), which saves two thread hops per call. What can take long runs in a task: List,
/// a Wait that has to wait, and a Create whose module file is not loaded yet.
package final class RuntimeService: Sendable {
    package let instances: InstanceService
    private let listEncoder = ListResponseEncoder()
    private let interceptor: RequestInterceptor

    package init(instances: InstanceService, logger: Logger, observer: (any RequestObserver)? = nil) {
        self.instances = instances
        // Failures are not logged: wasmletctl shows them to its user.
        self.interceptor = RequestInterceptor(observer: observer, logger: logger, failureLog: .none)
    }

    /// Every method of the service, ready for a `TTRPCServer`.
    package func register(in registry: inout TTRPCServiceRegistry) {
        let instances = instances
        let listEncoder = listEncoder
        func add<Request, Response>(
            _ method: RPCMethod<Request, Response>,
            _ body: @escaping @Sendable (Request, @escaping InstanceService.Completion<Response>) -> (@Sendable () -> Void)?
        ) {
            interceptor.registerInline(in: &registry, service: method.service, method: method.method) { _, request, respond in
                body(request, respond)
            }
        }
        let create = WasmletRuntimeAPI.create
        interceptor.registerInline(in: &registry, service: create.service, method: create.method) {
            (context, request: Wasmlet_V1_CreateRequest, respond: @escaping InstanceService.Completion<Wasmlet_V1_CreateResponse>) in
            let spec: InstanceSpec
            let module: ModuleReference
            let routes: [(route: String, module: ModuleReference)]
            do {
                (spec, module) = try Self.creation(request)
                routes = request.hasHTTPTrigger ? try MessageMapping.routes(request.httpTrigger) : []
                // A caller that is not root may name only host files it could open itself.
                if let access = CallerFileAccess.of(context.peer) {
                    let paths = ([module] + routes.map(\.module)).compactMap { reference -> String? in
                        if case .path(let path) = reference { return path }
                        return nil
                    }
                    try access.check(spec, modulePaths: paths)
                }
            } catch {
                respond(.failure(error))
                return nil
            }
            let answer: InstanceService.Completion<PersistedInstance> = { result in
                respond(result.map { record in
                    var response = Wasmlet_V1_CreateResponse()
                    response.instance = MessageMapping.instance(record, defaultStackBytes: instances.defaultStackBytes)
                    return response
                })
            }
            guard instances.createNeedsModuleLoad(module) || routes.contains(where: { instances.createNeedsModuleLoad($0.module) }) else {
                instances.create(spec, module: module, routes: routes, completion: answer)
                return nil
            }
            // Reading and validating a module file does not belong on an event loop.
            let task = Task { instances.create(spec, module: module, routes: routes, completion: answer) }
            return { task.cancel() }
        }
        add(WasmletRuntimeAPI.start) { request, respond in
            respond(Result {
                var response = Wasmlet_V1_StartResponse()
                response.instance = MessageMapping.instance(
                    try instances.start(Self.key(request.namespace, request.id)), defaultStackBytes: instances.defaultStackBytes)
                return response
            })
            return nil
        }
        add(WasmletRuntimeAPI.wait) { request, respond in
            instances.wait(Self.key(request.namespace, request.id)) { result in
                respond(result.map { exit in
                    var response = Wasmlet_V1_WaitResponse()
                    response.exit = MessageMapping.exit(exit)
                    return response
                })
            }
        }
        add(WasmletRuntimeAPI.kill) { request, respond in
            respond(Result {
                try instances.kill(Self.key(request.namespace, request.id), signal: Int32(clamping: request.signal))
                return Wasmlet_V1_KillResponse()
            })
            return nil
        }
        add(WasmletRuntimeAPI.delete) { request, respond in
            let key = Self.key(request.namespace, request.id)
            instances.delete(key) { result in
                if case .success = result { listEncoder.forget(key) }
                respond(result.map { exit in
                    var response = Wasmlet_V1_DeleteResponse()
                    if let exit { response.exit = MessageMapping.exit(exit) }
                    return response
                })
            }
            return nil
        }
        // Inspect's response is the instance as field 1, the very frame List keeps, so a repeated
        // Inspect builds and serializes nothing; it answers on the event loop.
        let inspect = WasmletRuntimeAPI.inspect
        interceptor.registerEncoded(
            in: &registry, service: inspect.service, method: inspect.method, request: Wasmlet_V1_InspectRequest.self,
            inline: true
        ) { request in
            let key = Self.key(request.namespace, request.id)
            do {
                return try listEncoder.instanceFrame(
                    key, runtime: instances.runtime, directory: instances.directory, defaultStackBytes: instances.defaultStackBytes)
            } catch let error as RuntimeError where error.kind == .notFound {
                guard let recovered = instances.directory.recovered(key) else { throw error }
                return try ListResponseEncoder.frame(MessageMapping.instance(recovered, defaultStackBytes: instances.defaultStackBytes))
            }
        }
        // List in a task: a large one takes milliseconds.
        let list = WasmletRuntimeAPI.list
        interceptor.registerEncoded(
            in: &registry, service: list.service, method: list.method, request: Wasmlet_V1_ListRequest.self, inline: false
        ) { request in
            try listEncoder.responseBytes(
                runtime: instances.runtime, directory: instances.directory,
                namespace: request.namespace.isEmpty ? nil : request.namespace, selector: request.labelSelector,
                defaultStackBytes: instances.defaultStackBytes)
        }
        add(WasmletRuntimeAPI.stats) { _, respond in
            respond(.success(Self.stats(instances.statistics())))
            return nil
        }
        add(WasmletRuntimeAPI.version) { _, respond in
            respond(.success(Self.version()))
            return nil
        }
    }

    // MARK: Translation

    static func key(_ namespace: String, _ id: String) -> InstanceKey { MessageMapping.key(namespace: namespace, id: id) }

    /// A Create's spec and module.
    static func creation(_ request: Wasmlet_V1_CreateRequest) throws -> (InstanceSpec, ModuleReference) {
        let key = key(request.namespace, request.id)
        let module: ModuleReference
        switch request.module {
        case .path(let path)?: module = .path(path)
        case .digest(let digest)?: module = .digest(digest)
        case nil: throw RuntimeError(.invalidArgument, "create \(key): a module path or digest is required")
        }
        return (try MessageMapping.spec(request, key: key), module)
    }

    static func stats(_ statistics: InstanceService.Statistics) -> Wasmlet_V1_StatsResponse {
        var response = Wasmlet_V1_StatsResponse()
        response.instancesCreated = statistics.instancesCreated
        response.instancesDeleted = statistics.instancesDeleted
        response.created = UInt64(statistics.runtime.created)
        response.running = UInt64(statistics.runtime.running)
        response.exited = UInt64(statistics.exited)
        response.memoryReservedBytes = statistics.runtime.memoryReservedBytes
        response.memoryBudgetBytes = statistics.runtime.memoryBudgetBytes
        response.memoryChargedBytes = statistics.runtime.memoryChargedBytes
        response.memoryBudgetDenials = statistics.runtime.memoryBudgetDenials
        response.moduleCacheEntries = UInt64(statistics.runtime.moduleCacheEntries)
        response.moduleCacheBytes = UInt64(statistics.runtime.moduleCacheBytes)
        response.fuelConsumedTotal = statistics.runtime.fuelConsumedTotal
        response.uptimeSeconds = UInt64(statistics.uptime.components.seconds)
        return response
    }

    static func version() -> Wasmlet_V1_VersionResponse {
        var response = Wasmlet_V1_VersionResponse()
        response.version = DaemonVersion.version
        response.revision = DaemonVersion.revision
        response.engine = DaemonVersion.engine
        response.apiVersion = WasmletRuntimeAPI.apiVersion
        return response
    }
}
