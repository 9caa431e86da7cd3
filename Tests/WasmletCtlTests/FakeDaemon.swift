import Foundation
import SwiftProtobuf
import Synchronization
import WasmletAPI
import WasmletTTRPC

#if canImport(Glibc)
import Glibc
#endif

/// A minimal in-process wasmlet.v1.Runtime on a real Unix socket, for end-to-end tests of the
/// wasmletctl binary's plumbing (FIFOs, exit codes, signal forwarding) independent of the
/// engine. Its "guest" echoes its argv to the stdout FIFO, writes "to stderr" to the stderr
/// FIFO, exits with N given `--exit N`, and given `--sleep` runs until killed.
final class FakeDaemon: Sendable {
    struct Entry {
        var instance: Wasmlet_V1_Instance
        var request: Wasmlet_V1_CreateRequest
        var waiters: [CheckedContinuation<Wasmlet_V1_ExitRecord, Never>] = []
        var killSignal: UInt32?
    }

    let socketPath: String
    private let entries = Mutex<[String: Entry]>([:])
    /// Every Kill request, in order, as "ns/id:signal".
    let kills = Mutex<[String]>([])
    private let serverBox = Mutex<TTRPCServer?>(nil)
    /// Every Start request, in order, as "ns/id".
    let starts = Mutex<[String]>([])
    /// While closed, Create (after creating) and Start (after starting the guest) hold their
    /// answers: the windows in which wasmletctl has an instance but does not know it yet.
    let createAnswers = AnswerGate()
    let startAnswers = AnswerGate()

    private init(socketPath: String) { self.socketPath = socketPath }

    static func start() async throws -> FakeDaemon {
        let daemon = FakeDaemon(socketPath: temporarySocketPath("wfake"))
        var registry = TTRPCServiceRegistry()
        daemon.register(&registry)
        let server = try await TTRPCServer.bind(unixSocketPath: daemon.socketPath, registry: registry)
        daemon.serverBox.withLock { $0 = server }
        return daemon
    }

    func stop() async {
        if let server = serverBox.withLock({ $0 }) { await server.shutdown(gracePeriod: .seconds(1)) }
        unlink(socketPath)
    }

    func request(namespace: String, id: String) -> Wasmlet_V1_CreateRequest? {
        entries.withLock { $0["\(namespace)/\(id)"]?.request }
    }

    func instanceCount() -> Int { entries.withLock { $0.count } }

    func instance(namespace: String, id: String) -> Wasmlet_V1_Instance? {
        entries.withLock { $0[Self.key(namespace, id)]?.instance }
    }

    private static func key(_ namespace: String, _ id: String) -> String { "\(namespace)/\(id)" }

    private func notFound(_ namespace: String, _ id: String) -> TTRPCError {
        .notFound("instance \(namespace)/\(id) not found")
    }

    private func register(_ registry: inout TTRPCServiceRegistry) {
        let api = WasmletRuntimeAPI.self
        registry.register(service: api.serviceName, method: api.create.method) {
            (_, request: Wasmlet_V1_CreateRequest) async throws -> Wasmlet_V1_CreateResponse in
            let instance = Wasmlet_V1_Instance.with {
                $0.namespace = request.namespace
                $0.id = request.id
                $0.labels = request.labels
                $0.state = .created
                $0.moduleDigest = "sha256:feedfacecafe0000111122223333"
                $0.modulePath = request.path
                $0.createdAt = Google_Protobuf_Timestamp(date: Date())
                $0.limits = request.limits
            }
            try self.entries.withLock { entries throws(TTRPCError) in
                let key = Self.key(request.namespace, request.id)
                guard entries[key] == nil else { throw .alreadyExists("instance \(key) already exists") }
                entries[key] = Entry(instance: instance, request: request)
            }
            await self.createAnswers.pass()
            return .with { $0.instance = instance }
        }
        registry.register(service: api.serviceName, method: api.start.method) {
            (_, request: Wasmlet_V1_StartRequest) async throws -> Wasmlet_V1_StartResponse in
            let key = Self.key(request.namespace, request.id)
            let entry = try self.entries.withLock { entries throws(TTRPCError) -> Entry in
                guard var entry = entries[key] else { throw self.notFound(request.namespace, request.id) }
                guard entry.instance.state == .created else { throw .failedPrecondition("instance \(key) already started") }
                entry.instance.state = .running
                entry.instance.startedAt = Google_Protobuf_Timestamp(date: Date())
                entries[key] = entry
                return entry
            }
            self.starts.withLock { $0.append(key) }
            Thread.detachNewThread { self.runGuest(key: key, request: entry.request) }
            await self.startAnswers.pass()
            return .with { $0.instance = entry.instance }
        }
        registry.register(service: api.serviceName, method: api.wait.method) {
            (_, request: Wasmlet_V1_WaitRequest) async throws -> Wasmlet_V1_WaitResponse in
            let key = Self.key(request.namespace, request.id)
            guard self.entries.withLock({ $0[key] }) != nil else { throw self.notFound(request.namespace, request.id) }
            let exit = await withCheckedContinuation { continuation in
                let ready: Wasmlet_V1_ExitRecord? = self.entries.withLock { entries in
                    if let entry = entries[key], entry.instance.hasExit { return entry.instance.exit }
                    entries[key]?.waiters.append(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
            return .with { $0.exit = exit }
        }
        registry.register(service: api.serviceName, method: api.kill.method) {
            (_, request: Wasmlet_V1_KillRequest) async throws -> Wasmlet_V1_KillResponse in
            let key = Self.key(request.namespace, request.id)
            try self.entries.withLock { entries throws(TTRPCError) in
                guard entries[key] != nil else { throw self.notFound(request.namespace, request.id) }
                let signal = request.signal == 0 ? 9 : request.signal
                switch entries[key]!.instance.state {
                case .running:
                    entries[key]!.killSignal = signal
                case .created:
                    // As the daemon does: a created instance never runs, and exits killed.
                    entries[key]!.instance.state = .exited
                    entries[key]!.instance.exit = .with {
                        $0.code = 128 + Int32(signal)
                        $0.reason = .killed
                        $0.signal = signal
                    }
                default:
                    throw .failedPrecondition("instance \(key) is not running")
                }
            }
            self.kills.withLock { $0.append("\(key):\(request.signal)") }
            return .init()
        }
        registry.register(service: api.serviceName, method: api.delete.method) {
            (_, request: Wasmlet_V1_DeleteRequest) async throws -> Wasmlet_V1_DeleteResponse in
            let key = Self.key(request.namespace, request.id)
            return try self.entries.withLock { entries throws(TTRPCError) in
                guard let entry = entries[key] else { throw self.notFound(request.namespace, request.id) }
                guard entry.instance.state != .running else { throw .failedPrecondition("instance \(key) is running") }
                entries[key] = nil
                return .with { if entry.instance.hasExit { $0.exit = entry.instance.exit } }
            }
        }
        registry.register(service: api.serviceName, method: api.inspect.method) {
            (_, request: Wasmlet_V1_InspectRequest) async throws -> Wasmlet_V1_InspectResponse in
            guard let entry = self.entries.withLock({ $0[Self.key(request.namespace, request.id)] }) else {
                throw self.notFound(request.namespace, request.id)
            }
            return .with { $0.instance = entry.instance }
        }
        registry.register(service: api.serviceName, method: api.list.method) {
            (_, request: Wasmlet_V1_ListRequest) async throws -> Wasmlet_V1_ListResponse in
            let all = self.entries.withLock { $0.values.map(\.instance) }
            return .with {
                $0.instances = all.filter { instance in
                    (request.namespace.isEmpty || instance.namespace == request.namespace)
                        && request.labelSelector.allSatisfy { instance.labels[$0.key] == $0.value }
                }
            }
        }
        registry.register(service: api.serviceName, method: api.stats.method) {
            (_, _: Wasmlet_V1_StatsRequest) async throws -> Wasmlet_V1_StatsResponse in
            let count = UInt64(self.instanceCount())
            return .with { $0.instancesCreated = count; $0.exited = count; $0.uptimeSeconds = 42 }
        }
        registry.register(service: api.serviceName, method: api.version.method) {
            (_, _: Wasmlet_V1_VersionRequest) async throws -> Wasmlet_V1_VersionResponse in
            .with { $0.version = "9.9.9-fake"; $0.revision = "abc123"; $0.engine = "none"; $0.apiVersion = "wasmlet.v1" }
        }
    }

    /// Holds callers of `pass` while closed (it starts open).
    final class AnswerGate: Sendable {
        private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((true, []))
        func close() { state.withLock { $0.open = false } }
        func open() {
            let waiters = state.withLock { state in
                state.open = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
        func pass() async {
            await withCheckedContinuation { continuation in
                let open = state.withLock { state in
                    if !state.open { state.waiters.append(continuation) }
                    return state.open
                }
                if open { continuation.resume() }
            }
        }
    }

    /// The fake guest: runs on its own thread, writes to the stdio FIFOs the way the daemon would.
    private func runGuest(key: String, request: Wasmlet_V1_CreateRequest) {
        let out = request.stdout.isEmpty ? -1 : open(request.stdout, O_WRONLY | O_CLOEXEC)
        let err = request.stderr.isEmpty ? -1 : open(request.stderr, O_WRONLY | O_CLOEXEC)
        func emit(_ fd: Int32, _ text: String) {
            guard fd >= 0 else { return }
            _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
        for (index, argument) in request.args.enumerated() { emit(out, "argv[\(index)]=\(argument)\n") }
        for variable in request.env { emit(out, "env \(variable)\n") }
        emit(err, "to stderr\n")
        var code: Int32 = 0
        if let at = request.args.firstIndex(of: "--exit"), at + 1 < request.args.count {
            code = Int32(request.args[at + 1]) ?? 0
        }
        var reason = Wasmlet_V1_ExitReason.exited
        var signal: UInt32 = 0
        if request.args.contains("--sleep") {
            emit(out, "sleeping\n")
            while true {
                if let sent = entries.withLock({ $0[key]?.killSignal }) {
                    reason = .killed
                    signal = sent
                    code = 128 + Int32(sent)
                    break
                }
                usleep(10_000)
            }
        }
        if out >= 0 { close(out) }
        if err >= 0 { close(err) }
        let exit = Wasmlet_V1_ExitRecord.with {
            $0.code = code
            $0.reason = reason
            $0.signal = signal
            $0.exitedAt = Google_Protobuf_Timestamp(date: Date())
        }
        let waiters = entries.withLock { entries -> [CheckedContinuation<Wasmlet_V1_ExitRecord, Never>] in
            entries[key]?.instance.state = .exited
            entries[key]?.instance.exit = exit
            defer { entries[key]?.waiters = [] }
            return entries[key]?.waiters ?? []
        }
        for waiter in waiters { waiter.resume(returning: exit) }
    }
}
