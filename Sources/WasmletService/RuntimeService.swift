import Foundation
import Logging
import Synchronization
import WasmletAPI
import WasmletRuntime
import WasmletStore
import WasmletTTRPC

/// `wasmlet.v1.Runtime` over a `WasmletRuntime`: decodes requests into runtime calls, keeps the
/// durable records in step, and answers with containerd's status codes.
///
/// Durability rule: a request that changes what a restart would report (Create, Delete)
/// returns only after its record is on disk; if the record cannot be written the request fails
/// INTERNAL and is undone where possible, so a client is never told "done" about something a
/// restart would forget. Start is the exception by design: its running record is queued with
/// the next batch but not waited for, because a restart reports an instance whose last record
/// on disk is "created" exactly as one whose last record is "running" (exited, 137,
/// daemon_restarted); a crash in that window loses only the start time. Exits are recorded
/// from the runtime's event callback (see `RuntimeEventRecorder`).
public final class RuntimeService: Sendable {
    package let runtime: WasmletRuntime
    let store: InstanceStore
    package let directory: InstanceDirectory
    private let modules = ModulePathCache()
    private let listEncoder = ListResponseEncoder()
    private let logger: Logger
    private let draining = Atomic<Bool>(false)
    private let createdCount = Atomic<UInt64>(0)
    private let deletedCount = Atomic<UInt64>(0)
    private let startedAt = ContinuousClock.now
    /// Told of every request (method name, status code, latency) and of kill requests: metrics.
    package let observer: (any RequestObserver)?

    package init(
        runtime: WasmletRuntime, store: InstanceStore, directory: InstanceDirectory, logger: Logger,
        observer: (any RequestObserver)? = nil
    ) {
        self.runtime = runtime
        self.store = store
        self.directory = directory
        self.logger = logger
        self.observer = observer
    }

    /// From now on Create and Start answer UNAVAILABLE (SIGTERM drain); the rest keeps working
    /// so clients can still Wait for, Inspect and Delete what is winding down.
    package func beginDraining() { draining.store(true, ordering: .sequentiallyConsistent) }

    var isDraining: Bool { draining.load(ordering: .sequentiallyConsistent) }

    /// Every method of the service, ready for a `TTRPCServer`.
    ///
    /// Most methods run inline on the connection's event loop (`TTRPCInlineHandler`): they
    /// answer at once (Start, Inspect, Kill, Stats, Version, a Wait for an instance that has
    /// exited) or hand the record to the store and answer from its writer thread (Create,
    /// Delete), which saves two thread hops per call. What can take long runs in a task: List,
    /// a Wait that has to wait, and a Create whose module file is not loaded yet.
    package func register(in registry: inout TTRPCServiceRegistry) {
        func add<Request, Response>(
            _ method: RPCMethod<Request, Response>,
            _ body: @escaping @Sendable (RuntimeService, TTRPCCallContext, Request) async throws -> Response
        ) {
            registry.register(service: method.service, method: method.method, request: Request.self, response: Response.self) {
                [self] context, request in
                let began = ContinuousClock.now
                do {
                    let response = try await body(self, context, request)
                    observer?.request(method: method.method, code: .ok, duration: ContinuousClock.now - began)
                    return response
                } catch {
                    let mapped = ErrorMapping.ttrpc(error)
                    observer?.request(method: method.method, code: mapped.code, duration: ContinuousClock.now - began)
                    throw mapped
                }
            }
        }
        typealias Respond<Response> = @Sendable (Result<Response, any Error>) -> Void
        func addInline<Request, Response>(
            _ method: RPCMethod<Request, Response>,
            _ body: @escaping @Sendable (RuntimeService, Request, @escaping Respond<Response>) -> (@Sendable () -> Void)?
        ) {
            registry.registerInline(
                service: method.service, method: method.method, request: Request.self, response: Response.self
            ) { [self] _, request, respond in
                let began = ContinuousClock.now
                return body(self, request) { [observer] result in
                    switch result {
                    case .success:
                        observer?.request(method: method.method, code: .ok, duration: ContinuousClock.now - began)
                        respond(result)
                    case .failure(let error):
                        let mapped = ErrorMapping.ttrpc(error)
                        observer?.request(method: method.method, code: mapped.code, duration: ContinuousClock.now - began)
                        respond(.failure(mapped))
                    }
                }
            }
        }
        addInline(WasmletRuntimeAPI.create) { service, request, respond in
            guard service.canCreateWithoutLoading(request) else {
                // Reading and validating a module file does not belong on an event loop.
                let task = Task { service.create(request, completion: respond) }
                return { task.cancel() }
            }
            service.create(request, completion: respond)
            return nil
        }
        addInline(WasmletRuntimeAPI.start) { service, request, respond in
            service.start(request, completion: respond)
            return nil
        }
        addInline(WasmletRuntimeAPI.wait) { service, request, respond in
            do {
                if let response = try service.waitWithoutWaiting(request) {
                    respond(.success(response))
                    return nil
                }
            } catch {
                respond(.failure(error))
                return nil
            }
            let task = Task {
                do { respond(.success(try await service.wait(request))) } catch { respond(.failure(error)) }
            }
            return { task.cancel() }
        }
        addInline(WasmletRuntimeAPI.kill) { service, request, respond in
            service.observer?.killRequested(MessageMapping.key(namespace: request.namespace, id: request.id))
            respond(Result { try service.kill(request) })
            return nil
        }
        addInline(WasmletRuntimeAPI.delete) { service, request, respond in
            service.delete(request, completion: respond)
            return nil
        }
        // List and Inspect answer with wire bytes they assemble from encoded instances kept
        // between calls (see ListResponseEncoder): `answer` decodes the request, maps errors and
        // records the call, as registerInline does for typed handlers.
        @Sendable func answer<Request, Response>(
            _ method: RPCMethod<Request, Response>, _ payload: [UInt8], _ body: (Request) throws -> [UInt8]
        ) -> Result<[UInt8], any Error> {
            let began = ContinuousClock.now
            do {
                let request: Request
                do {
                    request = try Request(serializedBytes: payload)
                } catch {
                    throw TTRPCError.invalidArgument(
                        "\(method.service)/\(method.method): request is not a valid \(Request.protoMessageName): \(error)")
                }
                let bytes = try body(request)
                observer?.request(method: method.method, code: .ok, duration: ContinuousClock.now - began)
                return .success(bytes)
            } catch {
                let mapped = ErrorMapping.ttrpc(error)
                observer?.request(method: method.method, code: mapped.code, duration: ContinuousClock.now - began)
                return .failure(mapped)
            }
        }
        // Inspect's response is the instance as field 1, the very frame List keeps, so a repeated
        // Inspect builds and serializes nothing; it answers on the event loop.
        let inspect = WasmletRuntimeAPI.inspect
        registry.registerInline(service: inspect.service, method: inspect.method) { [self] _, payload, respond in
            respond(answer(inspect, payload) { try inspectResponseBytes($0) })
            return nil
        }
        // List in a task: a large one takes milliseconds.
        let list = WasmletRuntimeAPI.list
        registry.register(service: list.service, method: list.method) { [self] _, payload in
            try answer(list, payload) { request in
                try listEncoder.responseBytes(
                    runtime: runtime, directory: directory, namespace: request.namespace.isEmpty ? nil : request.namespace,
                    selector: request.labelSelector, defaultStackBytes: runtime.configuration.defaultStackBytes)
            }.get()
        }
        addInline(WasmletRuntimeAPI.stats) { service, request, respond in
            respond(.success(service.stats(request)))
            return nil
        }
        addInline(WasmletRuntimeAPI.version) { _, _, respond in
            respond(.success(Self.version()))
            return nil
        }
    }

    /// Whether a Create can run without reading a module file: by digest, or by a path whose
    /// module is cached.
    private func canCreateWithoutLoading(_ request: Wasmlet_V1_CreateRequest) -> Bool {
        switch request.module {
        case .path(let path)?: modules.isLoaded(path: path, runtime: runtime)
        case .digest?, nil: true
        }
    }

    // MARK: Methods

    /// Creates an instance; returns once its record is durable (blocks the calling thread
    /// meanwhile: from async code prefer `create(_:completion:)` or `createDurably(_:)`).
    func create(_ request: Wasmlet_V1_CreateRequest) throws -> Wasmlet_V1_CreateResponse {
        try Self.blocking { create(request, completion: $0) }
    }

    /// `create` that suspends instead of blocking while its record is written.
    ///
    /// `inheritedListeners` (containerd's Create: the sockets the shim bound in the pod's
    /// network namespace) go to the runtime with the spec, never through the message: they are
    /// this call's to close from here on, and are closed on every failure (see `create`).
    package func createDurably(
        _ request: Wasmlet_V1_CreateRequest, inheritedListeners: [InheritedListener] = []
    ) async throws -> Wasmlet_V1_CreateResponse {
        try await withCheckedThrowingContinuation { continuation in
            create(request, inheritedListeners: inheritedListeners) { continuation.resume(with: $0) }
        }
    }

    /// `create` in two halves: everything up to handing the record to the store runs on the
    /// calling thread; `completion` runs on the store's writer thread once the record is durable
    /// (or could not be made so, and the creation was undone). Keep `completion` short.
    ///
    /// The runtime owns `inheritedListeners` once it is asked to create; a failure before
    /// that closes them here (`close()` does nothing to one the runtime adopted), and a
    /// creation undone below closes them through the runtime's delete.
    func create(
        _ request: Wasmlet_V1_CreateRequest, inheritedListeners: [InheritedListener] = [],
        completion: @escaping @Sendable (Result<Wasmlet_V1_CreateResponse, any Error>) -> Void
    ) {
        observer?.admissionBegan("Create")
        let record: PersistedInstance
        let digest: String
        do {
            (record, digest) = try createInRuntime(request, inheritedListeners: inheritedListeners)
        } catch {
            for listener in inheritedListeners { listener.close() }
            observer?.admissionEnded("Create")
            completion(.failure(error))
            return
        }
        let key = record.key
        store.persist(record) { [self] error in
            observer?.admissionEnded("Create")
            if let error {
                // Undo: an instance whose record is not on disk would be forgotten by a restart.
                _ = try? runtime.delete(key)
                directory.removeModulePath(for: key, serial: record.serial)
                logger.error("cannot record a created instance; creation undone", metadata: Self.metadata(key, error))
                completion(.failure(TTRPCError.internal("create \(key): cannot record the instance durably: \(error)")))
                return
            }
            createdCount.add(1, ordering: .relaxed)
            logger.debug("instance created", metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "module": "\(digest)"])
            var response = Wasmlet_V1_CreateResponse()
            response.instance = instance(record)
            completion(.success(response))
        }
    }

    /// Create up to the record: the module, the runtime instance.
    private func createInRuntime(
        _ request: Wasmlet_V1_CreateRequest, inheritedListeners: [InheritedListener]
    ) throws -> (PersistedInstance, String) {
        try refuseWhileDraining()
        let key = MessageMapping.key(namespace: request.namespace, id: request.id)
        if directory.recovered(key) != nil {
            throw RuntimeError(.alreadyExists, "instance \(key) already exists (exited before the daemon restarted; delete it first)")
        }
        let module: LoadedModule
        var modulePath: String?
        switch request.module {
        case .path(let path)?:
            module = try modules.load(path: path, runtime: runtime)
            modulePath = path
        case .digest(let digest)?:
            guard let cached = runtime.module(digest: digest) else {
                throw RuntimeError(.notFound, "module \(digest) is not in the module cache; create by path first")
            }
            module = cached
        case nil:
            throw RuntimeError(.invalidArgument, "create \(key): a module path or digest is required")
        }
        var spec = try MessageMapping.spec(request, key: key, digest: module.digest)
        spec.inheritedListeners = inheritedListeners
        let snapshot = try runtime.create(spec)
        directory.setModulePath(modulePath, for: key, serial: snapshot.serial)
        return (PersistedInstance(snapshot: snapshot, modulePath: modulePath), module.digest)
    }

    /// Starts an instance. Its running record is queued, not waited for (see the type's
    /// durability rule), so this does not block.
    package func start(_ request: Wasmlet_V1_StartRequest) throws -> Wasmlet_V1_StartResponse {
        try Self.blocking { start(request, completion: $0) }
    }

    /// `start` for async callers (it never waits for the disk).
    func startDurably(_ request: Wasmlet_V1_StartRequest) async throws -> Wasmlet_V1_StartResponse {
        try await withCheckedThrowingContinuation { continuation in start(request) { continuation.resume(with: $0) } }
    }

    /// `start` with the shape of `create(_:completion:)`; `completion` runs before this returns.
    func start(
        _ request: Wasmlet_V1_StartRequest,
        completion: @escaping @Sendable (Result<Wasmlet_V1_StartResponse, any Error>) -> Void
    ) {
        observer?.admissionBegan("Start")
        defer { observer?.admissionEnded("Start") }
        let record: PersistedInstance
        do {
            try refuseWhileDraining()
            let key = MessageMapping.key(namespace: request.namespace, id: request.id)
            if directory.recovered(key) != nil {
                throw RuntimeError(.failedPrecondition, "instance \(key) has exited (daemon restarted); it cannot be started")
            }
            try runtime.start(key)
            let snapshot = try runtime.inspect(key)
            record = PersistedInstance(snapshot: snapshot, modulePath: directory.modulePath(for: key, serial: snapshot.serial))
        } catch {
            completion(.failure(error))
            return
        }
        // A guest that ends before the batch is written has its exit record written instead.
        let key = record.key
        let logger = logger
        store.persist(record, waitForNewer: false, background: true) { error in
            guard let error else { return }
            // The created record stays on disk: a restart reports the instance daemon_restarted,
            // as it would from this one. The exit is written (or fails) on its own.
            logger.error("cannot record a started instance", metadata: Self.metadata(key, error))
        }
        logger.debug("instance started", metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)"])
        var response = Wasmlet_V1_StartResponse()
        response.instance = instance(record)
        completion(.success(response))
    }

    package func wait(_ request: Wasmlet_V1_WaitRequest) async throws -> Wasmlet_V1_WaitResponse {
        let key = MessageMapping.key(namespace: request.namespace, id: request.id)
        var response = Wasmlet_V1_WaitResponse()
        if let recovered = directory.recovered(key), let exit = recovered.exit {
            response.exit = MessageMapping.exit(exit)
            return response
        }
        // Cancelling the calling task (deadline passed, connection closed) ends the wait.
        response.exit = MessageMapping.exit(try await runtime.wait(key))
        return response
    }

    /// Wait's answer if it needs no waiting: the instance has exited (or the error, e.g. NOT_FOUND);
    /// nil while it has not.
    func waitWithoutWaiting(_ request: Wasmlet_V1_WaitRequest) throws -> Wasmlet_V1_WaitResponse? {
        let key = MessageMapping.key(namespace: request.namespace, id: request.id)
        var response = Wasmlet_V1_WaitResponse()
        if let recovered = directory.recovered(key), let exit = recovered.exit {
            response.exit = MessageMapping.exit(exit)
            return response
        }
        guard let exit = try runtime.inspect(key).exit else { return nil }
        response.exit = MessageMapping.exit(exit)
        return response
    }

    package func kill(_ request: Wasmlet_V1_KillRequest) throws -> Wasmlet_V1_KillResponse {
        let key = MessageMapping.key(namespace: request.namespace, id: request.id)
        if directory.recovered(key) != nil {
            throw RuntimeError(.failedPrecondition, "instance \(key) has already exited (daemon restarted)")
        }
        let signal = request.signal == 0 ? SIGKILL : Int32(clamping: request.signal)
        try runtime.kill(key, signal: signal)
        logger.info("instance killed", metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "signal": "\(signal)"])
        return Wasmlet_V1_KillResponse()
    }

    /// Deletes an instance; returns once the removal of its record is durable (blocks the
    /// calling thread meanwhile: from async code prefer `delete(_:completion:)` or `deleteDurably(_:)`).
    func delete(_ request: Wasmlet_V1_DeleteRequest) throws -> Wasmlet_V1_DeleteResponse {
        try Self.blocking { delete(request, completion: $0) }
    }

    /// `delete` that suspends instead of blocking while the removal is written.
    package func deleteDurably(_ request: Wasmlet_V1_DeleteRequest) async throws -> Wasmlet_V1_DeleteResponse {
        try await withCheckedThrowingContinuation { continuation in delete(request) { continuation.resume(with: $0) } }
    }

    /// `delete` in two halves, as `create(_:completion:)`.
    func delete(
        _ request: Wasmlet_V1_DeleteRequest,
        completion: @escaping @Sendable (Result<Wasmlet_V1_DeleteResponse, any Error>) -> Void
    ) {
        let key = MessageMapping.key(namespace: request.namespace, id: request.id)
        var response = Wasmlet_V1_DeleteResponse()
        if let recovered = directory.recovered(key) {
            if let exit = recovered.exit { response.exit = MessageMapping.exit(exit) }
            let answer = response
            store.remove(key, serial: 0) { [self] error in
                if let error {
                    completion(.failure(TTRPCError.internal("delete \(key): cannot remove the record: \(error)")))
                    return
                }
                _ = directory.removeRecovered(key)
                deletedCount.add(1, ordering: .relaxed)
                completion(.success(answer))
            }
            return
        }
        let snapshot: InstanceSnapshot
        do {
            snapshot = try runtime.delete(key)
        } catch {
            completion(.failure(error))
            return
        }
        directory.removeModulePath(for: key, serial: snapshot.serial)
        listEncoder.forget(key)
        if let exit = snapshot.exit { response.exit = MessageMapping.exit(exit) }
        let answer = response
        store.remove(key, serial: snapshot.serial) { [self] error in
            if let error {
                logger.error("cannot remove the record of a deleted instance", metadata: Self.metadata(key, error))
                completion(
                    .failure(
                        TTRPCError.internal(
                            "delete \(key): the instance is gone but its record could not be removed (it will reappear after a restart): \(error)"
                        )))
                return
            }
            deletedCount.add(1, ordering: .relaxed)
            completion(.success(answer))
        }
    }

    /// `InspectResponse` as wire bytes (see the Inspect handler).
    func inspectResponseBytes(_ request: Wasmlet_V1_InspectRequest) throws -> [UInt8] {
        let key = MessageMapping.key(namespace: request.namespace, id: request.id)
        do {
            return try listEncoder.instanceFrame(
                key, runtime: runtime, directory: directory, defaultStackBytes: runtime.configuration.defaultStackBytes)
        } catch let error as RuntimeError where error.kind == .notFound {
            guard let recovered = directory.recovered(key) else { throw error }
            return try ListResponseEncoder.frame(instance(recovered))
        }
    }

    package func inspect(_ request: Wasmlet_V1_InspectRequest) throws -> Wasmlet_V1_InspectResponse {
        let key = MessageMapping.key(namespace: request.namespace, id: request.id)
        var response = Wasmlet_V1_InspectResponse()
        response.instance = try instance(for: key)
        return response
    }

    func stats(_ request: Wasmlet_V1_StatsRequest) -> Wasmlet_V1_StatsResponse {
        let statistics = runtime.statistics()
        var response = Wasmlet_V1_StatsResponse()
        response.instancesCreated = createdCount.load(ordering: .relaxed)
        response.instancesDeleted = deletedCount.load(ordering: .relaxed)
        response.created = UInt64(statistics.created)
        response.running = UInt64(statistics.running)
        response.exited = UInt64(statistics.exited + directory.recoveredCount)
        response.memoryReservedBytes = statistics.memoryReservedBytes
        response.memoryBudgetBytes = statistics.memoryBudgetBytes
        response.memoryChargedBytes = statistics.memoryChargedBytes
        response.memoryBudgetDenials = statistics.memoryBudgetDenials
        response.moduleCacheEntries = UInt64(statistics.moduleCacheEntries)
        response.moduleCacheBytes = UInt64(statistics.moduleCacheBytes)
        response.fuelConsumedTotal = statistics.fuelConsumedTotal
        response.uptimeSeconds = UInt64((ContinuousClock.now - startedAt).components.seconds)
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

    /// Live counts for STATUS=, recovered instances counted as exited.
    package func counts() -> (running: Int, created: Int, exited: Int) {
        let statistics = runtime.statistics()
        return (statistics.running, statistics.created, statistics.exited + directory.recoveredCount)
    }

    // MARK: Helpers

    private func refuseWhileDraining() throws {
        if isDraining { throw TTRPCError.unavailable("daemon is shutting down") }
    }

    private func instance(for key: InstanceKey) throws -> Wasmlet_V1_Instance {
        do {
            let snapshot = try runtime.inspect(key)
            return instance(PersistedInstance(snapshot: snapshot, modulePath: directory.modulePath(for: key, serial: snapshot.serial)))
        } catch let error as RuntimeError where error.kind == .notFound {
            guard let recovered = directory.recovered(key) else { throw error }
            return instance(recovered)
        }
    }

    private func instance(_ record: PersistedInstance) -> Wasmlet_V1_Instance {
        MessageMapping.instance(record, defaultStackBytes: runtime.configuration.defaultStackBytes)
    }

    /// Runs a completion-style method and waits for its result on the calling thread.
    private static func blocking<Response: Sendable>(
        _ body: (@escaping @Sendable (Result<Response, any Error>) -> Void) -> Void
    ) throws -> Response {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<Response, any Error>?>(nil)
        body { outcome in
            result.withLock { $0 = outcome }
            done.signal()
        }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    static func metadata(_ key: InstanceKey, _ error: any Error) -> Logger.Metadata {
        ["namespace": "\(key.namespace)", "id": "\(key.id)", "error": "\(error)"]
    }
}
