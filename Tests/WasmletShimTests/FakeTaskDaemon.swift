import Foundation
import SwiftProtobuf
import Synchronization
import WasmletAPI
import WasmletTTRPC

#if canImport(Glibc)
import Glibc
#endif

/// Plays wasmletd for the shim: serves containerd.task.v2.Task (and v3) on a Unix socket,
/// records every call with its metadata and stream id, and keeps just enough task state to give
/// consistent answers. A task exits when the test calls `exit(id:status:)` or sends Kill.
final class FakeTaskDaemon: Sendable {
    struct Call: Sendable {
        var method: String
        var streamID: UInt32
        var metadata: TTRPCMetadata
        var payload: [UInt8]
    }

    struct TaskRecord: Sendable {
        var bundle: String
        var started = false
        var exit: UInt32?
    }

    let socketPath: String
    let calls = Mutex<[Call]>([])
    let tasks = Mutex<[String: TaskRecord]>([:])
    /// Exit status `Delete` reports for a task the daemon does not know (the cleanup path).
    let unknownDeleteStatus: UInt32 = 3
    private let server = Mutex<TTRPCServer?>(nil)
    /// Wait calls not answered yet, by task id; answered when the task exits.
    private let waiters = Mutex<[String: [UInt64: @Sendable (UInt32) -> Void]]>([:])
    private let nextWaiter = Atomic<UInt64>(0)

    private init(socketPath: String) { self.socketPath = socketPath }

    static func start(socketPath: String) async throws -> FakeTaskDaemon {
        let daemon = FakeTaskDaemon(socketPath: socketPath)
        var registry = TTRPCServiceRegistry()
        for service in [ContainerdTaskAPI.serviceNameV2, ContainerdTaskAPI.serviceNameV3] {
            daemon.register(service: service, in: &registry)
        }
        let bound = try await TTRPCServer.bind(unixSocketPath: socketPath, registry: registry)
        daemon.server.withLock { $0 = bound }
        return daemon
    }

    /// Closes the socket and every connection at once, like a crashed daemon.
    func stop() async {
        let bound = server.withLock { server -> TTRPCServer? in
            defer { server = nil }
            return server
        }
        await bound?.shutdown(gracePeriod: .zero)
        unlink(socketPath)
    }

    func exit(id: String, status: UInt32) {
        tasks.withLock { $0[id]?.exit = status }
        let answers = waiters.withLock { $0.removeValue(forKey: id) } ?? [:]
        for answer in answers.values { answer(status) }
    }

    func recorded(_ method: String) -> [Call] { calls.withLock { $0.filter { $0.method == method } } }

    private func record(_ context: TTRPCCallContext, _ payload: [UInt8]) {
        calls.withLock {
            $0.append(Call(method: context.method, streamID: context.streamID, metadata: context.metadata, payload: payload))
        }
    }

    private static func pid(_ context: TTRPCCallContext) -> UInt32 {
        UInt32(context.metadata["wasmlet-shim-pid"] ?? "") ?? 0
    }

    /// Every method is an inline handler: it answers on the server's event loop, never on the
    /// test process's concurrency pool. Hundreds of tests run in parallel on that pool's two
    /// threads, so a handler queued there can wait longer than the shim's or the test's ttrpc
    /// deadline, which a real daemon (a process of its own) never makes anyone wait.
    private func register(service: String, in registry: inout TTRPCServiceRegistry) {
        typealias API = ContainerdTaskAPI
        /// A method that answers at once.
        func handle<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ method: String, _ body: @escaping @Sendable (TTRPCCallContext, Request) throws -> Response
        ) {
            handleLater(method) { (context, request: Request, respond: @escaping @Sendable (Result<Response, any Error>) -> Void) in
                respond(Result { try body(context, request) })
                return nil
            }
        }
        /// A method that answers through `respond`, perhaps later; returns what to do if the
        /// call is abandoned first.
        func handleLater<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ method: String,
            _ body: @escaping @Sendable (
                TTRPCCallContext, Request, @escaping @Sendable (Result<Response, any Error>) -> Void
            ) -> (@Sendable () -> Void)?
        ) {
            registry.registerInline(service: service, method: method) { (context: TTRPCCallContext, payload: [UInt8], respond) in
                self.record(context, payload)
                guard let request = try? Request(serializedBytes: payload) else {
                    respond(.failure(TTRPCError.invalidArgument("bad \(Request.protoMessageName)")))
                    return nil
                }
                return body(context, request) { result in
                    respond(result.flatMap { response in Result { try response.serializedBytes() } })
                }
            }
        }
        handle("Connect") { (context, _: Containerd_Task_V2_ConnectRequest) in
            Containerd_Task_V2_ConnectResponse.with {
                $0.shimPid = Self.pid(context)
                $0.taskPid = Self.pid(context)
                $0.version = "fake-wasmletd"
            }
        }
        handle("Create") { (context, request: Containerd_Task_V2_CreateTaskRequest) in
            if request.id.hasPrefix("refuse") { throw TTRPCError.failedPrecondition("fake daemon refuses \(request.id)") }
            try self.tasks.withLock { tasks throws(TTRPCError) in
                guard tasks[request.id] == nil else { throw .alreadyExists("task \(request.id) exists") }
                tasks[request.id] = TaskRecord(bundle: request.bundle)
            }
            return Containerd_Task_V2_CreateTaskResponse.with { $0.pid = Self.pid(context) }
        }
        handle("Start") { (context, request: Containerd_Task_V2_StartRequest) in
            try self.tasks.withLock { tasks throws(TTRPCError) in
                guard tasks[request.id] != nil else { throw .notFound("task \(request.id) not found") }
                tasks[request.id]?.started = true
            }
            return Containerd_Task_V2_StartResponse.with { $0.pid = Self.pid(context) }
        }
        handle("State") { (context, request: Containerd_Task_V2_StateRequest) in
            guard let task = self.tasks.withLock({ $0[request.id] }) else {
                throw TTRPCError.notFound("task \(request.id) not found")
            }
            return Containerd_Task_V2_StateResponse.with {
                $0.id = request.id
                $0.bundle = task.bundle
                $0.pid = Self.pid(context)
                $0.status = task.exit != nil ? .stopped : task.started ? .running : .created
                $0.exitStatus = task.exit ?? 0
            }
        }
        handleLater("Wait") { (_, request: Containerd_Task_V2_WaitRequest, respond: @escaping @Sendable (Result<Containerd_Task_V2_WaitResponse, any Error>) -> Void) in
            @Sendable func answer(_ status: UInt32) {
                respond(.success(.with {
                    $0.exitStatus = status
                    $0.exitedAt = Google_Protobuf_Timestamp(seconds: 1_700_000_000, nanos: 0)
                }))
            }
            let waiter = self.nextWaiter.add(1, ordering: .relaxed).newValue
            // Checked and registered under the waiters' lock, which exit(id:) takes after
            // setting the status: an exit cannot fall between the check and the registration.
            let known: (exists: Bool, exit: UInt32?) = self.waiters.withLock { waiters in
                guard let task = self.tasks.withLock({ $0[request.id] }) else { return (false, nil) }
                if let status = task.exit { return (true, status) }
                waiters[request.id, default: [:]][waiter] = answer
                return (true, nil)
            }
            guard known.exists else {
                respond(.failure(TTRPCError.notFound("task \(request.id) not found")))
                return nil
            }
            if let status = known.exit { answer(status) }
            return { _ = self.waiters.withLock { $0[request.id]?.removeValue(forKey: waiter) } }
        }
        handle("Kill") { (_, request: Containerd_Task_V2_KillRequest) in
            self.exit(id: request.id, status: 128 + request.signal)
            return Google_Protobuf_Empty()
        }
        handle("Delete") { (context, request: Containerd_Task_V2_DeleteRequest) in
            let removed = self.tasks.withLock { $0.removeValue(forKey: request.id) }
            return Containerd_Task_V2_DeleteResponse.with {
                $0.pid = Self.pid(context)
                $0.exitStatus = removed?.exit ?? self.unknownDeleteStatus
                $0.exitedAt = Google_Protobuf_Timestamp(seconds: 1_700_000_001, nanos: 0)
            }
        }
        handle("Pids") { (context, _: Containerd_Task_V2_PidsRequest) in
            Containerd_Task_V2_PidsResponse.with { $0.processes = [.with { $0.pid = Self.pid(context) }] }
        }
        // Never answers: a call that is still in flight when the daemon dies.
        handleLater("Stats") { (_, _: Containerd_Task_V2_StatsRequest, _: @escaping @Sendable (Result<Containerd_Task_V2_StatsResponse, any Error>) -> Void) in
            nil
        }
        handle("Shutdown") { (_, _: Containerd_Task_V2_ShutdownRequest) in Google_Protobuf_Empty() }
    }
}

/// Plays containerd's ttrpc events service: records every Forward.
final class FakeContainerdEvents: Sendable {
    struct Event: Sendable {
        var namespaceMetadata: String?
        var request: Containerd_Services_Events_Ttrpc_V1_ForwardRequest
    }

    let socketPath: String
    let events = Mutex<[Event]>([])
    private let server = Mutex<TTRPCServer?>(nil)
    /// With `holdingAnswers`, Forward calls are received but answered only by `releaseAnswers()`.
    private let holdingAnswers: Bool
    private let held = Mutex<[@Sendable () -> Void]>([])

    private init(socketPath: String, holdingAnswers: Bool) {
        self.socketPath = socketPath
        self.holdingAnswers = holdingAnswers
    }

    func releaseAnswers() {
        for answer in held.withLock({ list in defer { list.removeAll() }; return list }) { answer() }
    }

    static func start(socketPath: String, holdingAnswers: Bool = false) async throws -> FakeContainerdEvents {
        let fake = FakeContainerdEvents(socketPath: socketPath, holdingAnswers: holdingAnswers)
        var registry = TTRPCServiceRegistry()
        let api = ContainerdEventsAPI.forward
        // Inline, on the server's event loop (see FakeTaskDaemon.register): the shim gives a
        // Forward only BackgroundPublications.timeoutMilliseconds.
        registry.registerInline(service: api.service, method: api.method) {
            (context, request: Containerd_Services_Events_Ttrpc_V1_ForwardRequest, respond: @escaping @Sendable (Result<Google_Protobuf_Empty, any Error>) -> Void) in
            let answer: @Sendable () -> Void = { respond(.success(Google_Protobuf_Empty())) }
            fake.events.withLock {
                $0.append(Event(namespaceMetadata: context.containerdNamespace, request: request))
            }
            if fake.holdingAnswers {
                fake.held.withLock { $0.append(answer) }
            } else {
                answer()
            }
            return nil
        }
        let bound = try await TTRPCServer.bind(unixSocketPath: socketPath, registry: registry)
        fake.server.withLock { $0 = bound }
        return fake
    }

    func stop() async {
        let bound = server.withLock { $0 }
        await bound?.shutdown(gracePeriod: .zero)
    }
}
