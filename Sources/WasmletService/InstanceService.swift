import Foundation
import Logging
import Synchronization
import WasmletRuntime
import WasmletStore

/// Where a Create's module comes from.
package enum ModuleReference: Sendable, Equatable {
    /// A module file on the daemon's host, read (once, then cached by path) at create.
    case path(String)
    /// A module already in the runtime's cache.
    case digest(String)
}

/// The daemon's one instance service: what both APIs do to instances, with value types in and
/// value types out. `RuntimeService` (wasmlet.v1) and `ContainerdTaskService` (containerd's
/// task API) only translate their messages to these calls and back; `RequestInterceptor`
/// records and maps what they answer.
///
/// Durability rule: an operation that changes what a restart would report (create, delete)
/// completes only after its record is on disk; if the record cannot be written it fails
/// INTERNAL and is undone where possible, so a client is never told "done" about something a
/// restart would forget. Start is the exception by design: its running record is queued with
/// the next batch but not waited for, because a restart reports an instance whose last record
/// on disk is "created" exactly as one whose last record is "running" (exited, 137,
/// daemon_restarted); a crash in that window loses only the start time. Exits are recorded
/// from the runtime's event callback (see `RuntimeEventRecorder`).
///
/// One call style per operation: those that wait for the disk or for a guest (create, wait,
/// delete) take a completion, which runs exactly once on whatever thread finished the work
/// (the store's writer thread for create and delete), so that a server can answer from an
/// event loop without a task; `awaitCompletion` and `awaitCancellable` adapt them for async callers. The rest
/// answer at once and never block.
package final class InstanceService: Sendable {
    package typealias Completion<Value> = @Sendable (Result<Value, any Error>) -> Void

    /// For wire-level readers that keep encodings between calls (List, Inspect): reads only.
    package let runtime: WasmletRuntime
    package let directory: InstanceDirectory
    let store: InstanceStore
    private let modules = ModulePathCache()
    private let logger: Logger
    private let draining = Atomic<Bool>(false)
    private let createdCount = Atomic<UInt64>(0)
    private let deletedCount = Atomic<UInt64>(0)
    private let startedAt = ContinuousClock.now
    /// Told of admissions and kill requests (metrics); requests themselves go through the interceptor.
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

    /// From now on create and start fail UNAVAILABLE (SIGTERM drain); the rest keeps working
    /// so clients can still wait for, inspect and delete what is winding down.
    package func beginDraining() { draining.store(true, ordering: .sequentiallyConsistent) }

    var isDraining: Bool { draining.load(ordering: .sequentiallyConsistent) }

    // MARK: Create

    /// Whether a create of `module` must read a module file first (a path not loaded yet):
    /// servers run such a create off their event loop.
    package func createNeedsModuleLoad(_ module: ModuleReference) -> Bool {
        switch module {
        case .path(let path): !modules.isLoaded(path: path, runtime: runtime)
        case .digest: false
        }
    }

    /// Loads a module from bytes (the pod sandbox's built-in module); answers its digest.
    package func loadModule(bytes: [UInt8]) throws -> String {
        try runtime.loadModule(bytes: bytes).digest
    }

    /// Creates an instance of `module` as `spec` says (its `moduleDigest` is filled in from
    /// `module`). Everything up to handing the record to the store runs on the calling thread;
    /// `completion` runs on the store's writer thread once the record is durable, or once it
    /// could not be made so and the creation was undone. Keep `completion` short.
    ///
    /// `spec.inheritedListeners` (containerd's Create: the sockets the shim bound in the pod's
    /// network namespace) are this call's to close: the runtime owns them once it is asked to
    /// create; a failure before that closes them here (`close()` does nothing to one the
    /// runtime adopted), and a creation undone below closes them through the runtime's delete.
    ///
    /// `routes` is a service's route table, each route's module loaded here as `module` is.
    package func create(
        _ spec: InstanceSpec, module: ModuleReference, routes: [(route: String, module: ModuleReference)] = [],
        completion: @escaping Completion<PersistedInstance>
    ) {
        observer?.admissionBegan("Create")
        let record: PersistedInstance
        do {
            record = try createInRuntime(spec, module: module, routes: routes)
        } catch {
            for listener in spec.inheritedListeners { listener.close() }
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
                let kind: RuntimeError.Kind = (error as? StoreError)?.isOutOfSpace == true ? .resourceExhausted : .internal
                completion(.failure(RuntimeError(kind, "create \(key): cannot record the instance durably: \(error)")))
                return
            }
            createdCount.add(1, ordering: .relaxed)
            logger.debug(
                "instance created", metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "module": "\(record.moduleDigest)"])
            completion(.success(record))
        }
    }

    /// Create up to the record: the module, the runtime instance.
    private func createInRuntime(
        _ requested: InstanceSpec, module: ModuleReference, routes: [(route: String, module: ModuleReference)]
    ) throws -> PersistedInstance {
        try refuseWhileDraining()
        let key = requested.key
        if directory.recovered(key) != nil {
            throw RuntimeError(.alreadyExists, "instance \(key) already exists (exited before the daemon restarted; delete it first)")
        }
        let loaded = try load(module)
        var spec = requested
        spec.moduleDigest = loaded.digest
        // Held until the runtime has them, so the cache cannot evict a route's module meanwhile.
        var routeModules: [LoadedModule] = []
        defer { withExtendedLifetime(routeModules) {} }
        if !routes.isEmpty {
            guard spec.httpTrigger != nil else { throw RuntimeError(.invalidArgument, "routes need an HTTP trigger") }
            routeModules = try routes.map { route in
                do {
                    return try load(route.module)
                } catch let error as RuntimeError {
                    throw RuntimeError(error.kind, "route \(route.route): \(error.message)")
                }
            }
            spec.httpTrigger?.routes = zip(routes, routeModules).map { HTTPRouteSpec(route: $0.route, moduleDigest: $1.digest) }
        }
        var modulePath: String?
        if case .path(let path) = module { modulePath = path }
        let snapshot = try runtime.create(spec)
        directory.setModulePath(modulePath, for: key, serial: snapshot.serial)
        return PersistedInstance(snapshot: snapshot, modulePath: modulePath)
    }

    /// A module by path (read once, then cached by path) or by digest (already in the cache).
    private func load(_ module: ModuleReference) throws -> LoadedModule {
        switch module {
        case .path(let path):
            return try modules.load(path: path, runtime: runtime)
        case .digest(let digest):
            guard let cached = runtime.module(digest: digest) else {
                throw RuntimeError(.notFound, "module \(digest) is not in the module cache; create by path first")
            }
            return cached
        }
    }

    // MARK: Start, wait, kill

    /// Starts an instance. Its running record is queued, not waited for (see the type's
    /// durability rule), so this does not block.
    package func start(_ key: InstanceKey) throws -> PersistedInstance {
        observer?.admissionBegan("Start")
        defer { observer?.admissionEnded("Start") }
        try refuseWhileDraining()
        if directory.recovered(key) != nil {
            throw RuntimeError(.failedPrecondition, "instance \(key) has exited (daemon restarted); it cannot be started")
        }
        try runtime.start(key)
        let snapshot = try runtime.inspect(key)
        let record = PersistedInstance(snapshot: snapshot, modulePath: directory.modulePath(for: key, serial: snapshot.serial))
        // A guest that ends before the batch is written has its exit record written instead.
        let logger = logger
        store.persist(record, waitForNewer: false, background: true) { error in
            guard let error else { return }
            // The created record stays on disk: a restart reports the instance daemon_restarted,
            // as it would from this one. The exit is written (or fails) on its own.
            logger.error("cannot record a started instance", metadata: Self.metadata(key, error))
        }
        logger.debug("instance started", metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)"])
        return record
    }

    /// Completes with the instance's exit: at once (on the calling thread) if it has exited or
    /// cannot be found, else when it exits. Returns how to give up waiting (the caller's
    /// deadline passed or its connection closed): the completion then gets CancellationError.
    @discardableResult
    package func wait(_ key: InstanceKey, completion: @escaping Completion<ExitRecord>) -> (@Sendable () -> Void)? {
        if let recovered = directory.recovered(key), let exit = recovered.exit {
            completion(.success(exit))
            return nil
        }
        do {
            if let exit = try runtime.inspect(key).exit {
                completion(.success(exit))
                return nil
            }
        } catch {
            completion(.failure(error))
            return nil
        }
        let task = Task { [runtime] in
            do { completion(.success(try await runtime.wait(key))) } catch { completion(.failure(error)) }
        }
        return { task.cancel() }
    }

    /// Sends `signal` (SIGKILL for 0) to a live instance.
    package func kill(_ key: InstanceKey, signal requested: Int32) throws {
        observer?.killRequested(key)
        if directory.recovered(key) != nil {
            throw RuntimeError(.failedPrecondition, "instance \(key) has already exited (daemon restarted)")
        }
        let signal = requested == 0 ? SIGKILL : requested
        try runtime.kill(key, signal: signal)
        logger.info("instance killed", metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "signal": "\(signal)"])
    }

    /// Ends the guest's stdin: it reads what is buffered, then end-of-file.
    package func closeStdin(_ key: InstanceKey) throws { try runtime.closeStdin(key) }

    // MARK: Delete

    /// Deletes an instance that is not running; completes with its exit (nil: never started)
    /// once the removal of its record is durable, on the store's writer thread.
    package func delete(_ key: InstanceKey, completion: @escaping Completion<ExitRecord?>) {
        if let recovered = directory.recovered(key) {
            store.remove(key, serial: 0) { [self] error in
                if let error {
                    completion(.failure(RuntimeError(.internal, "delete \(key): cannot remove the record: \(error)")))
                    return
                }
                _ = directory.removeRecovered(key)
                deletedCount.add(1, ordering: .relaxed)
                completion(.success(recovered.exit))
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
        store.remove(key, serial: snapshot.serial) { [self] error in
            if let error {
                logger.error("cannot remove the record of a deleted instance", metadata: Self.metadata(key, error))
                completion(
                    .failure(
                        RuntimeError(
                            .internal,
                            "delete \(key): the instance is gone but its record could not be removed (it will reappear after a restart): \(error)"
                        )))
                return
            }
            deletedCount.add(1, ordering: .relaxed)
            completion(.success(snapshot.exit))
        }
    }

    // MARK: Reading

    /// An instance, live or recovered (exited before the daemon restarted).
    package func inspect(_ key: InstanceKey) throws -> PersistedInstance {
        do {
            let snapshot = try runtime.inspect(key)
            return PersistedInstance(snapshot: snapshot, modulePath: directory.modulePath(for: key, serial: snapshot.serial))
        } catch let error as RuntimeError where error.kind == .notFound {
            guard let recovered = directory.recovered(key) else { throw error }
            return recovered
        }
    }

    /// A live instance's memory and CPU use.
    package func usage(_ key: InstanceKey) throws -> InstanceUsage { try runtime.usage(key) }

    /// Instances that exited before the daemon restarted and are not deleted yet.
    package func recoveredInstances() -> [PersistedInstance] { directory.allRecovered() }

    /// The node's figures: instances by state, memory, module cache, fuel, uptime.
    package struct Statistics: Sendable {
        package var runtime: RuntimeStatistics
        package var instancesCreated: UInt64
        package var instancesDeleted: UInt64
        /// Exited instances, recovered ones included.
        package var exited: Int
        package var uptime: Duration
    }

    package func statistics() -> Statistics {
        let statistics = runtime.statistics()
        return Statistics(
            runtime: statistics, instancesCreated: createdCount.load(ordering: .relaxed),
            instancesDeleted: deletedCount.load(ordering: .relaxed), exited: statistics.exited + directory.recoveredCount,
            uptime: ContinuousClock.now - startedAt)
    }

    /// Live counts for STATUS=, recovered instances counted as exited.
    package func counts() -> (running: Int, created: Int, exited: Int) {
        let statistics = runtime.statistics()
        return (statistics.running, statistics.created, statistics.exited + directory.recoveredCount)
    }

    /// The limits a record shows for a stack size left to the default.
    package var defaultStackBytes: UInt64 { runtime.configuration.defaultStackBytes }

    // MARK: Helpers

    private func refuseWhileDraining() throws {
        if isDraining { throw RuntimeError(.unavailable, "daemon is shutting down") }
    }

    static func metadata(_ key: InstanceKey, _ error: any Error) -> Logger.Metadata {
        ["namespace": "\(key.namespace)", "id": "\(key.id)", "error": "\(error)"]
    }
}

/// An `InstanceService` operation that completes through a callback, for async callers: suspends
/// (never blocks a thread of the concurrency pool) until it completes. Cancelling the calling
/// task calls the cancel handle the operation returned, if any.
package func awaitCancellable<Value: Sendable>(
    _ operation: (@escaping InstanceService.Completion<Value>) -> (@Sendable () -> Void)?
) async throws -> Value {
    let cancellation = CancelHandle()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            cancellation.set(operation { continuation.resume(with: $0) })
        }
    } onCancel: {
        cancellation.cancel()
    }
}

/// `awaitCancellable` for operations that cannot be given up (create, delete).
package func awaitCompletion<Value: Sendable>(_ operation: (@escaping InstanceService.Completion<Value>) -> Void) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in operation { continuation.resume(with: $0) } }
}

/// The cancel handle of an operation in flight; a cancel that comes before the handle runs it
/// as soon as it is set.
private final class CancelHandle: Sendable {
    private enum State { case waiting, cancelled, set(@Sendable () -> Void), done }
    private let state = Mutex<State>(.waiting)

    func set(_ handle: (@Sendable () -> Void)?) {
        let cancelNow: Bool = state.withLock { state in
            guard let handle else { state = .done; return false }
            if case .cancelled = state { state = .done; return true }
            state = .set(handle)
            return false
        }
        if cancelNow { handle?() }
    }

    func cancel() {
        let handle: (@Sendable () -> Void)? = state.withLock { state in
            switch state {
            case .waiting:
                state = .cancelled
                return nil
            case .set(let handle):
                state = .done
                return handle
            case .cancelled, .done:
                return nil
            }
        }
        handle?()
    }
}
