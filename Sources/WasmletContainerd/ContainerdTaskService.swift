import Foundation
import Glibc
import Logging
import Synchronization
import SwiftProtobuf
import WasmletAPI
import WasmletRuntime
import WasmletService
import WasmletStore
import WasmletTTRPC

/// containerd's task service (`containerd.task.v2.Task`, and `v3` for containerd 2.x), served
/// on the daemon's API socket to `containerd-shim-wasmlet-v1`, which relays containerd's calls
/// and says who it is in the request metadata (`ShimIdentity`).
///
/// Each task is a wasmlet instance in containerd's namespace with the container's id, created
/// through `InstanceService` as wasmlet.v1's instances are, so it gets the same durable
/// records, limits and daemon-restart rule as any other instance. This type adds the containerd view: the OCI spec mapping, pids,
/// statuses, and the events containerd relies on, in order: /tasks/create, /tasks/start,
/// /tasks/exit (and /tasks/oom), /tasks/delete.
///
/// The shim mounts the rootfs before it relays Create and unmounts it after Delete: the daemon
/// runs without CAP_SYS_ADMIN (see systemd/wasmletd.service).
package final class ContainerdTaskService: Sendable {
    /// What the daemon remembers of a task beyond its instance record.
    private struct Task: Sendable {
        var identity: ShimIdentity
        var bundle: String
        var stdin: String
        var stdout: String
        var stderr: String
        /// Publishes /tasks/exit once the instance ends; Delete waits for it so that
        /// /tasks/delete always follows /tasks/exit.
        var exitWatcher: _Concurrency.Task<Void, Never>?
        /// stdout/stderr FIFOs held open from Create until containerd has read them (see OutputFIFOHold).
        var outputHold: OutputFIFOHold?
        /// Opens once the exit has been reported (/tasks/exit published, after the output was
        /// read): Wait answers and State says STOPPED only then. Made at Start; nil before.
        var exitReported: ExitGate?
    }

    private let instances: InstanceService
    private let interceptor: RequestInterceptor
    private let publisher: TaskEventPublisher
    private let logger: Logger
    private let tasks = Mutex<[InstanceKey: Task]>([:])
    /// Listeners shims handed over, waiting for their Create (nil: no handoff socket).
    private let handoffs: ListenerHandoffTable?
    /// The handoff socket's path, for error messages.
    private let handoffSocket: String

    package init(
        instances: InstanceService, publisher: TaskEventPublisher, logger: Logger, observer: (any RequestObserver)? = nil,
        handoffs: ListenerHandoffTable? = nil, handoffSocket: String = ""
    ) {
        self.instances = instances
        self.interceptor = RequestInterceptor(observer: observer, logger: logger, failureLog: .allButNotFound)
        self.publisher = publisher
        self.logger = logger
        self.handoffs = handoffs
        self.handoffSocket = handoffSocket
    }

    /// Registers every method under both service names containerd uses.
    package func register(in registry: inout TTRPCServiceRegistry) {
        for name in [ContainerdTaskAPI.serviceNameV2, ContainerdTaskAPI.serviceNameV3] {
            func add<Request, Response>(
                _ method: RPCMethod<Request, Response>,
                _ body: @escaping @Sendable (ContainerdTaskService, TTRPCCallContext, Request) async throws -> Response
            ) {
                interceptor.register(in: &registry, service: name, method: method.method, label: "task.\(method.method)") {
                    [self] context, request in try await body(self, context, request)
                }
            }
            add(ContainerdTaskAPI.create) { try await $0.create($1, $2) }
            add(ContainerdTaskAPI.start) { try $0.start($1, $2) }
            add(ContainerdTaskAPI.wait) { try await $0.wait($1, $2) }
            add(ContainerdTaskAPI.kill) { try $0.kill($1, $2) }
            add(ContainerdTaskAPI.delete) { try await $0.delete($1, $2) }
            add(ContainerdTaskAPI.state) { try $0.state($1, $2) }
            add(ContainerdTaskAPI.pids) { try $0.pids($1, $2) }
            add(ContainerdTaskAPI.stats) { try $0.stats($1, $2) }
            add(ContainerdTaskAPI.connect) { try $0.connect($1, $2) }
            add(ContainerdTaskAPI.shutdown) { _, _, _ in ContainerdTaskAPI.Empty() }
            add(ContainerdTaskAPI.exec) { _, _, _ in throw TaskError.unimplemented("Exec") }
            add(ContainerdTaskAPI.pause) { _, _, _ in throw TaskError.unimplemented("Pause") }
            add(ContainerdTaskAPI.resume) { _, _, _ in throw TaskError.unimplemented("Resume") }
            add(ContainerdTaskAPI.checkpoint) { _, _, _ in throw TaskError.unimplemented("Checkpoint") }
            add(ContainerdTaskAPI.resizePty) { _, _, _ in throw TaskError.unimplemented("ResizePty (guests have no terminal)") }
            add(ContainerdTaskAPI.closeIO) { try $0.closeIO($1, $2) }
            add(ContainerdTaskAPI.update) { _, _, _ in throw TaskError.unimplemented("Update (resources are fixed at create)") }
        }
    }

    /// After a restart: forgets containerd tasks whose bundle directory is gone. containerd
    /// removes a bundle once it has deleted the task, so such a record can only be one whose
    /// Delete never reached this daemon (it was down); nobody would ever delete it.
    package func pruneOrphanedTasks() async {
        for record in instances.recoveredInstances()
        where record.labels[TaskSpecMapping.Label.owner] == TaskSpecMapping.Label.ownerContainerd {
            guard let bundle = record.labels[TaskSpecMapping.Label.bundle], !FileManager.default.fileExists(atPath: bundle)
            else { continue }
            let key = InstanceKey(namespace: record.namespace, id: record.id)
            do {
                _ = try await awaitCompletion { instances.delete(key, completion: $0) }
                logger.info("forgot a containerd task whose bundle is gone", metadata: ["namespace": "\(record.namespace)", "id": "\(record.id)"])
            } catch {
                logger.warning("cannot forget an orphaned containerd task", metadata: ["id": "\(record.id)", "error": "\(error)"])
            }
        }
    }

    // MARK: Methods

    /// Answers once the instance's record is durable. Suspends meanwhile (`awaitCompletion`):
    /// blocking would hold a thread of the shared concurrency pool until the journal's
    /// fdatasync, and enough concurrent Creates would stall every other task.
    func create(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_CreateTaskRequest) async throws
        -> Containerd_Task_V2_CreateTaskResponse
    {
        let identity = try ShimIdentity(context)
        // A bundle names a rootfs, bind mounts and a config the daemon reads with its own rights:
        // only containerd's shims (root) and the daemon's own user may create tasks.
        if CallerFileAccess.of(context.peer) != nil {
            throw TTRPCError.permissionDenied(
                "permission denied: uid \(context.peer.map { String($0.uid) } ?? "?") may not create containerd tasks (only root, as containerd's shims are)")
        }
        guard !request.id.isEmpty else { throw TTRPCError.invalidArgument("create: the task id is empty") }
        guard !request.bundle.isEmpty else { throw TTRPCError.invalidArgument("create \(request.id): no bundle directory") }
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        // Claimed first, so that every failure below closes them (the shim keeps no copy):
        // here until they are handed to the runtime, by InstanceService and the runtime after.
        let claimed = handoffs?.claim(key)
        var created = false
        defer { if !created { claimed?.close() } }
        if !request.checkpoint.isEmpty { throw TaskError.unimplemented("restoring from a checkpoint") }
        let spec = try OCIRuntimeSpec.load(bundle: request.bundle)
        let listeners = try TaskListeners.match(spec: spec, claimed: claimed, id: request.id, handoffSocket: handoffSocket)
        var sandboxDigest: String?
        if TaskSpecMapping.isSandbox(spec) {
            sandboxDigest = try instances.loadModule(bytes: SandboxModule.bytes)
        }
        var (instanceSpec, module) = try TaskSpecMapping.instanceSpec(
            task: request, spec: spec, identity: identity, sandboxModuleDigest: sandboxDigest)
        if let listeners { TaskListeners.attach(listeners, to: &instanceSpec) }
        // Before the instance exists, so containerd's end of each FIFO is open once Create answers.
        let outputHold = await OutputFIFOHold.open([request.stdout, request.stderr])
        // From here the instance service owns the listeners, and closes them if the create fails.
        instanceSpec.inheritedListeners = listeners?.handOver() ?? []
        do {
            let creating = instanceSpec
            _ = try await awaitCompletion { instances.create(creating, module: module, completion: $0) }
        } catch {
            outputHold.release()
            throw error
        }
        created = true
        tasks.withLock {
            $0[key] = Task(
                identity: identity, bundle: request.bundle, stdin: request.stdin, stdout: request.stdout,
                stderr: request.stderr, outputHold: outputHold)
        }
        var metadata: Logger.Metadata = [
            "namespace": "\(key.namespace)", "id": "\(key.id)",
            "module": "\(Self.describe(module, sandbox: sandboxDigest != nil))",
        ]
        if let listeners { metadata["listeners"] = "\(listeners.bound.joined(separator: ","))" }
        logger.info("task created", metadata: metadata)

        var event = Containerd_Events_TaskCreate()
        event.containerID = request.id
        event.bundle = request.bundle
        event.rootfs = request.rootfs
        event.io.stdin = request.stdin
        event.io.stdout = request.stdout
        event.io.stderr = request.stderr
        event.io.terminal = request.terminal
        event.pid = identity.shimPID
        publisher.publish(address: identity.ttrpcAddress, namespace: identity.namespace, topic: ContainerdEventsAPI.Topic.taskCreate, event: event)

        var response = Containerd_Task_V2_CreateTaskResponse()
        response.pid = identity.shimPID
        return response
    }

    func start(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_StartRequest) throws -> Containerd_Task_V2_StartResponse {
        let identity = try ShimIdentity(context)
        try refuseExec(request.execID)
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        // Before the guest runs, so a Wait that sees it exit always finds the gate to wait on.
        let exitReported = ExitGate()
        tasks.withLock { $0[key]?.exitReported = exitReported }
        let started: PersistedInstance
        do {
            started = try instances.start(key)
        } catch {
            exitReported.open()
            throw error
        }
        let pid = Self.pid(started, fallback: identity)
        let address = tasks.withLock { $0[key]?.identity.ttrpcAddress } ?? identity.ttrpcAddress

        var event = Containerd_Events_TaskStart()
        event.containerID = key.id
        event.pid = pid
        publisher.publish(address: address, namespace: key.namespace, topic: ContainerdEventsAPI.Topic.taskStart, event: event)

        // Queued after /tasks/start, so the exit can never be published first.
        let outputHold = tasks.withLock { $0[key]?.outputHold }
        let watcher = _Concurrency.Task { [instances, publisher, logger] in
            defer { exitReported.open() }
            let ended = try? await awaitCancellable { instances.wait(key, completion: $0) }
            // The guest's own descriptors are closed, and its listeners (the runtime owns them). Report the exit only once containerd's
            // client has read what the guest wrote and seen end-of-file: its Delete drops every
            // FIFO it has not yet marked open (see OutputFIFOHold).
            if let drained = await outputHold?.drain() {
                if !drained.unread.isEmpty {
                    logger.warning(
                        "reporting a task's exit with output nobody read",
                        metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "fifos": "\(drained.unread)"])
                } else if let waited = drained.waited {
                    logger.debug(
                        "exit held until containerd read the output",
                        metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "waited": "\(waited)"])
                }
            }
            guard let exit = ended else { return }
            var event = Containerd_Events_TaskExit()
            event.containerID = key.id
            event.id = key.id
            event.pid = pid
            event.exitStatus = Self.exitStatus(exit.code)
            event.exitedAt = Google_Protobuf_Timestamp(date: exit.exitedAt)
            publisher.publish(address: address, namespace: key.namespace, topic: ContainerdEventsAPI.Topic.taskExit, event: event)
            // Refused memory by its cap or by the node budget: both are an OOM to containerd.
            if exit.memoryExhausted && exit.code != 0 {
                var oom = Containerd_Events_TaskOOM()
                oom.containerID = key.id
                publisher.publish(address: address, namespace: key.namespace, topic: ContainerdEventsAPI.Topic.taskOOM, event: oom)
            }
            logger.info(
                "task exited",
                metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "code": "\(exit.code)", "reason": "\(exit.reason.rawValue)"])
        }
        tasks.withLock { $0[key]?.exitWatcher = watcher }

        var response = Containerd_Task_V2_StartResponse()
        response.pid = pid
        return response
    }

    func wait(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_WaitRequest) async throws -> Containerd_Task_V2_WaitResponse {
        let identity = try ShimIdentity(context)
        try refuseExec(request.execID)
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        let exit = try await awaitCancellable { instances.wait(key, completion: $0) }
        // Not before /tasks/exit: ctr deletes the task (dropping unread FIFOs) once Wait answers.
        await tasks.withLock { $0[key]?.exitReported }?.wait()
        var response = Containerd_Task_V2_WaitResponse()
        response.exitStatus = Self.exitStatus(exit.code)
        response.exitedAt = Google_Protobuf_Timestamp(date: exit.exitedAt)
        return response
    }

    func kill(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_KillRequest) throws -> ContainerdTaskAPI.Empty {
        let identity = try ShimIdentity(context)
        try refuseExec(request.execID)
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        // A task is one guest, so `all` needs nothing more. As with runc, a finished task
        // answers NOT_FOUND "process already finished", which containerd and CRI expect.
        let instance = try instance(key)
        if instance.state == .exited { throw TTRPCError.notFound("process already finished") }
        if request.signal == 0 { return ContainerdTaskAPI.Empty() }
        do {
            try instances.kill(key, signal: Int32(clamping: request.signal))
        } catch let error as RuntimeError where error.kind == .failedPrecondition {
            throw TTRPCError.notFound("process already finished")
        }
        return ContainerdTaskAPI.Empty()
    }

    func delete(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_DeleteRequest) async throws
        -> Containerd_Task_V2_DeleteResponse
    {
        let identity = try ShimIdentity(context)
        try refuseExec(request.execID)
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        var current = try instance(key)
        if identity.isCleanup, current.state != .exited {
            // `shim delete` after a lost shim: end the guest, whatever it is doing.
            try? instances.kill(key, signal: SIGKILL)
            // 3 s: past the runtime's 2 s kill escalation, within the shim's 4 s budget.
            _ = try? await withDeadline(.seconds(3)) { [instances] in
                try await awaitCancellable { instances.wait(key, completion: $0) }
            }
            current = try instance(key)
        }
        if current.state == .running {
            throw TTRPCError.failedPrecondition("task \(key.id) is still running; kill it first")
        }
        let task = tasks.withLock { $0[key] }
        await task?.exitWatcher?.value
        task?.outputHold?.release()  // a task deleted without having been started
        // Suspends, not blocks, until the removal is durable (see `create`).
        let deletedExit = try await awaitCompletion { instances.delete(key, completion: $0) }
        tasks.withLock { $0[key] = nil }

        var response = Containerd_Task_V2_DeleteResponse()
        response.pid = Self.pid(current, fallback: identity)
        if let deletedExit {
            response.exitStatus = Self.exitStatus(deletedExit.code)
            response.exitedAt = Google_Protobuf_Timestamp(date: deletedExit.exitedAt)
        } else {
            // Never started: nothing ran, so nothing failed — except after a lost shim, where
            // containerd's convention for "unknown" is SIGKILL's 137.
            response.exitStatus = identity.isCleanup ? 137 : 0
            response.exitedAt = Google_Protobuf_Timestamp(date: Date())
        }
        var event = Containerd_Events_TaskDelete()
        event.containerID = key.id
        event.id = key.id
        event.pid = response.pid
        event.exitStatus = response.exitStatus
        event.exitedAt = response.exitedAt
        let address = task?.identity.ttrpcAddress ?? current.labels[TaskSpecMapping.Label.ttrpcAddress] ?? identity.ttrpcAddress
        publisher.publish(address: address, namespace: key.namespace, topic: ContainerdEventsAPI.Topic.taskDelete, event: event)
        logger.info("task deleted", metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)"])
        return response
    }

    func state(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_StateRequest) throws -> Containerd_Task_V2_StateResponse {
        let identity = try ShimIdentity(context)
        try refuseExec(request.execID)
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        let instance = try instance(key)
        let task = tasks.withLock { $0[key] }
        var response = Containerd_Task_V2_StateResponse()
        response.id = key.id
        response.bundle = task?.bundle ?? instance.labels[TaskSpecMapping.Label.bundle] ?? ""
        response.pid = Self.pid(instance, fallback: identity)
        response.stdin = task?.stdin ?? ""
        response.stdout = task?.stdout ?? ""
        response.stderr = task?.stderr ?? ""
        // An exit not yet reported (its output still being read) is still RUNNING to containerd.
        let reported = task?.exitReported?.isOpen ?? true
        switch instance.state {
        case .created: response.status = .created
        case .running: response.status = .running
        case .exited where !reported: response.status = .running
        case .exited: response.status = .stopped
        }
        if let exit = instance.exit, reported {
            response.exitStatus = Self.exitStatus(exit.code)
            response.exitedAt = Google_Protobuf_Timestamp(date: exit.exitedAt)
        }
        return response
    }

    func pids(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_PidsRequest) throws -> Containerd_Task_V2_PidsResponse {
        let identity = try ShimIdentity(context)
        let instance = try instance(InstanceKey(namespace: identity.namespace, id: request.id))
        var process = Containerd_V1_Types_ProcessInfo()
        process.pid = Self.pid(instance, fallback: identity)
        var response = Containerd_Task_V2_PidsResponse()
        response.processes = [process]
        return response
    }

    /// cgroup v1 metrics, the message containerd and the CRI plugin decode: memory in use (the
    /// guest's linear memory, its peak and cap) and CPU time of the guest's thread.
    func stats(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_StatsRequest) throws -> Containerd_Task_V2_StatsResponse {
        let identity = try ShimIdentity(context)
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        let usage: InstanceUsage
        do {
            usage = try instances.usage(key)
        } catch let error as RuntimeError where error.kind == .notFound {
            throw TaskError.notFound(key.namespace, key.id)
        }
        var metrics = Io_Containerd_Cgroups_V1_Metrics()
        metrics.memory.usage.usage = usage.memoryBytes
        metrics.memory.usage.max = usage.peakMemoryBytes
        metrics.memory.usage.limit = usage.memoryCapBytes
        metrics.memory.rss = usage.memoryBytes
        metrics.cpu.usage.total = usage.cpuTimeNanoseconds
        var process = Io_Containerd_Cgroups_V1_PidsStat()
        process.current = 1
        metrics.pids = process
        var response = Containerd_Task_V2_StatsResponse()
        response.stats = try Google_Protobuf_Any(containerdPacking: metrics)
        return response
    }

    /// containerd's client sends CloseIO(stdin) once it has copied all of its input into the
    /// stdin FIFO (`ctr run` after its stdin ends; CRI for a `stdinOnce` container). The guest
    /// then reads what is in the FIFO and end-of-file, even if the client's writer never opened.
    func closeIO(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_CloseIORequest) throws -> ContainerdTaskAPI.Empty {
        let identity = try ShimIdentity(context)
        try refuseExec(request.execID)
        let key = InstanceKey(namespace: identity.namespace, id: request.id)
        guard request.stdin else { return ContainerdTaskAPI.Empty() }
        do {
            try instances.closeStdin(key)
        } catch let error as RuntimeError where error.kind == .notFound {
            throw TaskError.notFound(key.namespace, key.id)
        }
        return ContainerdTaskAPI.Empty()
    }

    func connect(_ context: TTRPCCallContext, _ request: Containerd_Task_V2_ConnectRequest) throws -> Containerd_Task_V2_ConnectResponse {
        let identity = try ShimIdentity(context)
        var response = Containerd_Task_V2_ConnectResponse()
        response.shimPid = identity.shimPID
        response.taskPid = (try? instance(InstanceKey(namespace: identity.namespace, id: request.id)))
            .map { Self.pid($0, fallback: identity) } ?? identity.shimPID
        response.version = "wasmletd \(DaemonVersion.version)"
        return response
    }

    // MARK: Helpers

    private func instance(_ key: InstanceKey) throws -> PersistedInstance {
        do {
            return try instances.inspect(key)
        } catch let error as RuntimeError where error.kind == .notFound {
            throw TaskError.notFound(key.namespace, key.id)
        }
    }

    /// Tasks have exactly one process; an exec id names one that cannot exist.
    private func refuseExec(_ execID: String) throws {
        if !execID.isEmpty { throw TTRPCError.notFound("exec process \(execID) not found (exec is not supported)") }
    }

    /// The pid containerd sees: the shim's, recorded at create so it stays stable.
    private static func pid(_ instance: PersistedInstance, fallback identity: ShimIdentity) -> UInt32 {
        instance.labels[TaskSpecMapping.Label.shimPID].flatMap(UInt32.init) ?? identity.shimPID
    }

    /// The module as the "task created" log line names it.
    private static func describe(_ module: ModuleReference, sandbox: Bool) -> String {
        switch module {
        case _ where sandbox: "pod sandbox"
        case .path(let path): path
        case .digest(let digest): digest
        }
    }

    /// containerd's exit_status is unsigned; guest codes are 0...255 or 128+signal.
    static func exitStatus(_ code: Int32) -> UInt32 { UInt32(bitPattern: code) }

    private func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask { try await _Concurrency.Task.sleep(for: limit); return nil }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
