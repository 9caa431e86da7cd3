import Foundation
import Glibc
import SwiftProtobuf
import Synchronization
import Testing
import WasmletAPI
import WasmletTTRPC
import WasmletTestSupport

/// containerd's task service as the shim relays it: a real daemon, a real ttrpc connection with
/// the shim's metadata, bundles on disk, and a stand-in for containerd's events socket that
/// records what the daemon publishes.
final class TaskHarness: @unchecked Sendable {
    let directory: TemporaryDirectory
    let daemon: DaemonProcess
    let client: TTRPCClient
    let events: EventRecorder
    let namespace = "ctr-test"
    let shimPID: UInt32 = 4242

    /// - Parameter arguments: extra `wasmletd` flags.
    init(arguments: [String] = []) async throws {
        directory = try TemporaryDirectory()
        daemon = try await DaemonProcess(directory: directory, arguments: arguments)
        events = try await EventRecorder(path: directory.path + "/containerd.sock.ttrpc")
        client = try await TTRPCClient.connect(unixSocketPath: daemon.socketPath)
    }

    func stop() async {
        await client.close()
        await daemon.stop()
        await events.server.shutdown(gracePeriod: .zero)
    }

    var metadata: TTRPCMetadata {
        [
            "containerd-namespace-ttrpc": namespace, "wasmlet-shim-namespace": namespace,
            "wasmlet-shim-pid": String(shimPID), "wasmlet-shim-group": "group-1",
            "wasmlet-shim-ttrpc-address": events.path,
        ]
    }

    func call<Request, Response>(
        _ method: RPCMethod<Request, Response>, _ request: Request, metadata extra: [String: String] = [:],
        service: String = ContainerdTaskAPI.serviceNameV2
    ) async throws -> Response {
        var metadata = self.metadata
        for (key, value) in extra { metadata[key] = value }
        return try await client.call(
            service: service, method: method.method, request: request, responseType: Response.self,
            timeout: .seconds(30), metadata: metadata)
    }

    /// A bundle as containerd lays it out: config.json and a rootfs holding the module.
    func bundle(
        _ id: String, module: String? = "hello", args: [String] = ["/app.wasm"], annotations: [String: String] = [:],
        memoryLimit: Int64? = nil, readonly: Bool = false, mounts: [[String: Any]] = []
    ) throws -> String {
        let bundle = directory.path + "/bundles/" + id
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        if let module {
            try FileManager.default.copyItem(atPath: example(module), toPath: bundle + "/rootfs/app.wasm")
        }
        var linux: [String: Any] = [:]
        if let memoryLimit { linux["resources"] = ["memory": ["limit": memoryLimit]] }
        let spec: [String: Any] = [
            "ociVersion": "1.0.2",
            "process": ["args": args, "env": ["PATH=/usr/bin", "GREETING=hi"], "cwd": "/", "terminal": false],
            "root": ["path": "rootfs", "readonly": readonly],
            "annotations": annotations, "linux": linux, "mounts": mounts,
        ]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        return bundle
    }

    func create(_ id: String, bundle: String, stdin: String = "", stdout: String = "", stderr: String = "") async throws -> UInt32 {
        var request = Containerd_Task_V2_CreateTaskRequest()
        request.id = id
        request.bundle = bundle
        request.stdin = stdin
        request.stdout = stdout
        request.stderr = stderr
        return try await call(ContainerdTaskAPI.create, request).pid
    }

    func start(_ id: String) async throws -> UInt32 {
        var request = Containerd_Task_V2_StartRequest()
        request.id = id
        return try await call(ContainerdTaskAPI.start, request).pid
    }

    func wait(_ id: String) async throws -> Containerd_Task_V2_WaitResponse {
        var request = Containerd_Task_V2_WaitRequest()
        request.id = id
        return try await call(ContainerdTaskAPI.wait, request)
    }

    func state(_ id: String) async throws -> Containerd_Task_V2_StateResponse {
        var request = Containerd_Task_V2_StateRequest()
        request.id = id
        return try await call(ContainerdTaskAPI.state, request)
    }

    func kill(_ id: String, signal: UInt32, all: Bool = false) async throws {
        var request = Containerd_Task_V2_KillRequest()
        request.id = id
        request.signal = signal
        request.all = all
        _ = try await call(ContainerdTaskAPI.kill, request)
    }

    func delete(_ id: String, cleanup: Bool = false) async throws -> Containerd_Task_V2_DeleteResponse {
        var request = Containerd_Task_V2_DeleteRequest()
        request.id = id
        return try await call(ContainerdTaskAPI.delete, request, metadata: cleanup ? ["wasmlet-shim-cleanup": "1"] : [:])
    }
}

/// containerd's ttrpc events service, reduced to recording every Forward it receives.
final class EventRecorder: Sendable {
    struct Event: Sendable {
        var topic: String
        var namespace: String
        var typeURL: String
        var value: Data
    }

    private final class Log: Sendable {
        let events = Mutex<[Event]>([])
    }

    let path: String
    let server: TTRPCServer
    private let log = Log()

    init(path: String) async throws {
        self.path = path
        let log = self.log
        var registry = TTRPCServiceRegistry()
        let method = ContainerdEventsAPI.forward
        // Inline, on the server's event loop: a handler task would wait for the test process's
        // concurrency pool, which hundreds of parallel tests keep busy, and the publisher gives
        // a Forward only seconds before it retries.
        registry.registerInline(service: method.service, method: method.method, request: method.requestType, response: method.responseType) {
            _, request, respond in
            let envelope = request.envelope
            log.events.withLock {
                $0.append(Event(topic: envelope.topic, namespace: envelope.namespace, typeURL: envelope.event.typeURL, value: envelope.event.value))
            }
            respond(.success(Google_Protobuf_Empty()))
            return nil
        }
        server = try await TTRPCServer.bind(unixSocketPath: path, registry: registry)
    }

    var all: [Event] { log.events.withLock { $0 } }

    func topics(for id: String) -> [String] {
        all.filter { event in
            switch event.topic {
            case "/tasks/create": (try? Containerd_Events_TaskCreate(serializedBytes: event.value))?.containerID == id
            case "/tasks/start": (try? Containerd_Events_TaskStart(serializedBytes: event.value))?.containerID == id
            case "/tasks/exit": (try? Containerd_Events_TaskExit(serializedBytes: event.value))?.containerID == id
            case "/tasks/delete": (try? Containerd_Events_TaskDelete(serializedBytes: event.value))?.containerID == id
            case "/tasks/oom": (try? Containerd_Events_TaskOOM(serializedBytes: event.value))?.containerID == id
            default: false
            }
        }.map(\.topic)
    }

    func exit(of id: String) -> Containerd_Events_TaskExit? {
        all.lazy.filter { $0.topic == "/tasks/exit" }
            .compactMap { try? Containerd_Events_TaskExit(serializedBytes: $0.value) }
            .first { $0.containerID == id }
    }
}

extension DaemonEndToEndTests {
    @Suite struct ContainerdTasks {
        @Test func runToCompletionWithOrderedEvents() async throws {
            let harness = try await TaskHarness()
            let stdout = harness.directory.path + "/t1.out"
            let bundle = try harness.bundle("t1")
            let pid = try await harness.create("t1", bundle: bundle, stdout: stdout)
            #expect(pid == harness.shimPID)
            #expect(try await harness.state("t1").status == .created)
            #expect(try await harness.start("t1") == harness.shimPID)
            let exit = try await harness.wait("t1")
            #expect(exit.exitStatus == 0)
            #expect(exit.exitedAt.seconds > 0)
            let state = try await harness.state("t1")
            #expect(state.status == .stopped)
            #expect(state.bundle == bundle)
            #expect(state.stdout == stdout)
            #expect(state.pid == harness.shimPID)
            let deleted = try await harness.delete("t1")
            #expect(deleted.exitStatus == 0)
            #expect(deleted.pid == harness.shimPID)
            #expect(try String(contentsOfFile: stdout, encoding: .utf8) == "hello from wasmlet\n")
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { harness.events.topics(for: "t1").count == 4 })
            #expect(harness.events.topics(for: "t1") == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"])
            #expect(harness.events.all.allSatisfy { $0.namespace == harness.namespace })
            #expect(harness.events.all.first?.typeURL == "containerd.events.TaskCreate")
            // Gone: State answers NOT_FOUND.
            let gone = await statusCode { _ = try await harness.state("t1") }
            #expect(gone?.0 == .notFound)
            await harness.stop()
        }

        /// containerd's end of the stdout FIFO is open once Create has answered (so a client
        /// cancelling FIFOs still "opening" after a fast exit drops nothing), and it sees the
        /// guest's line, then end-of-file, once the guest has exited.
        @Test func stdoutFIFOIsOpenFromCreateToExit() async throws {
            let harness = try await TaskHarness()
            let fifo = harness.directory.path + "/t-fifo.stdout"
            #expect(mkfifo(fifo, 0o600) == 0)
            // containerd's reader: a blocking open, then read to end-of-file.
            let reader = Mutex<(opened: Bool, data: [UInt8], eof: Bool)>((false, [], false))
            Thread {
                let fd = open(fifo, O_RDONLY | O_CLOEXEC)
                reader.withLock { $0.opened = fd >= 0 }
                guard fd >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = read(fd, &buffer, buffer.count)
                    if count > 0 {
                        reader.withLock { $0.data += buffer[0..<count] }
                    } else if count < 0, errno == EINTR {
                        continue
                    } else {
                        break
                    }
                }
                close(fd)
                reader.withLock { $0.eof = true }
            }.start()
            let bundle = try harness.bundle("t-fifo")
            _ = try await harness.create("t-fifo", bundle: bundle, stdout: fifo)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { reader.withLock { $0.opened } }, "containerd's end is open before Start")
            #expect(reader.withLock { $0.eof } == false)
            _ = try await harness.start("t-fifo")
            #expect(try await harness.wait("t-fifo").exitStatus == 0)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { reader.withLock { $0.eof } }, "end-of-file once the guest has exited")
            #expect(String(decoding: reader.withLock { $0.data }, as: UTF8.self) == "hello from wasmlet\n")
            _ = try await harness.delete("t-fifo")
            await harness.stop()
        }

        /// The exit is reported only once containerd's client has read the guest's output. Its
        /// reader of each FIFO is a goroutine that counts as open only when it runs again after
        /// the kernel's open(2) returned; on Delete (which `ctr run --rm` sends as soon as Wait
        /// answers) the client drops every FIFO not yet counted, unread. This reader opens at
        /// Create (the hold wakes it) but reads nothing until either Wait has answered (then the
        /// real client would have dropped the line: the failure) or the daemon is seen holding
        /// back an exit that has happened (the guest has exited, State still says RUNNING).
        @Test func exitIsReportedOnlyAfterALateReaderReadTheOutput() async throws {
            let harness = try await TaskHarness()
            let id = "t-late"
            let fifo = harness.directory.path + "/\(id).stdout"
            #expect(mkfifo(fifo, 0o600) == 0)
            struct Reader { var opened = false, data: [UInt8] = [], eof = false, exitPublishedBeforeRead = false }
            let reader = Mutex(Reader())
            let released = DispatchSemaphore(value: 0)
            Thread {
                let fd = open(fifo, O_RDONLY | O_CLOEXEC)
                reader.withLock { $0.opened = fd >= 0 }
                guard fd >= 0 else { return }
                released.wait()
                reader.withLock { $0.exitPublishedBeforeRead = harness.events.exit(of: id) != nil }
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = read(fd, &buffer, buffer.count)
                    if count > 0 {
                        reader.withLock { $0.data += buffer[0..<count] }
                    } else if count < 0, errno == EINTR {
                        continue
                    } else {
                        break
                    }
                }
                close(fd)
                reader.withLock { $0.eof = true }
            }.start()
            _ = try await harness.create(id, bundle: try harness.bundle(id), stdout: fifo)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { reader.withLock { $0.opened } })
            _ = try await harness.start(id)
            let answered = Mutex<[UInt8]?>(nil)
            let waiting = Task {
                let response = try await harness.wait(id)
                answered.withLock { $0 = reader.withLock { $0.data } }
                return response
            }
            var inspect = Wasmlet_V1_InspectRequest()
            inspect.namespace = harness.namespace
            inspect.id = id
            let holding = await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
                if answered.withLock({ $0 != nil }) { return true }
                let instance = try? await harness.client.call(
                    service: WasmletRuntimeAPI.inspect.service, method: WasmletRuntimeAPI.inspect.method, request: inspect,
                    responseType: Wasmlet_V1_InspectResponse.self, timeout: .seconds(30), metadata: harness.metadata
                ).instance
                guard instance?.state == .exited else { return false }
                return (try? await harness.state(id).status) == .running
            }
            #expect(holding, "neither did Wait answer nor was the exit seen held back")
            released.signal()
            let response = try await waiting.value
            #expect(response.exitStatus == 0)
            #expect(
                answered.withLock { $0.map { String(decoding: $0, as: UTF8.self) } } == "hello from wasmlet\n",
                "Wait answered before containerd's reader had read the output")
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { reader.withLock { $0.eof } }, "end-of-file once the output was read")
            #expect(!reader.withLock { $0.exitPublishedBeforeRead }, "/tasks/exit was published before the output was read")
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { harness.events.exit(of: id) != nil })  // published, then delivered
            #expect(try await harness.state(id).status == .stopped)
            _ = try await harness.delete(id)
            await harness.stop()
        }

        /// containerd's client sends CloseIO(stdin) once its input has ended. When the input
        /// ended before its writer's open of the stdin FIFO completed (`ctr run cat </dev/null`:
        /// the client cancels that open), no writer ever opens and closes the FIFO, so CloseIO is
        /// the only end-of-file the guest can get. Before Start, and once the guest has its end
        /// open (seen in the daemon's /proc/PID/fd), cat reads end-of-file and exits 0.
        @Test(arguments: [true, false]) func closeIOEndsAStdinThatNoWriterOpened(beforeStart: Bool) async throws {
            let harness = try await TaskHarness()
            let id = "t-closeio-\(beforeStart)"
            let fifo = harness.directory.path + "/\(id).stdin"
            #expect(mkfifo(fifo, 0o600) == 0)
            _ = try await harness.create(id, bundle: try harness.bundle(id, module: "cat"), stdin: fifo)
            var close = Containerd_Task_V2_CloseIORequest()
            close.id = id
            close.stdin = true
            if beforeStart { _ = try await harness.call(ContainerdTaskAPI.closeIO, close) }
            _ = try await harness.start(id)
            if !beforeStart {
                let daemonFDs = "/proc/\(harness.daemon.pid)/fd"
                let opened = await eventually {
                    let entries = (try? FileManager.default.contentsOfDirectory(atPath: daemonFDs)) ?? []
                    return entries.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: daemonFDs + "/" + $0)) == fifo }
                }
                #expect(opened, "the guest never opened its stdin")
                _ = try await harness.call(ContainerdTaskAPI.closeIO, close)
            }
            let ended = await eventually { (try? await harness.state(id).status) == .stopped }
            #expect(ended, "cat still waits on its stdin after CloseIO")
            if !ended { try await harness.kill(id, signal: 9) }
            #expect(try await harness.wait(id).exitStatus == 0)
            _ = try await harness.delete(id)
            var unknown = close
            unknown.id = "t-closeio-nobody"
            #expect(await statusCode { _ = try await harness.call(ContainerdTaskAPI.closeIO, unknown) }?.0 == .notFound)
            await harness.stop()
        }

        @Test func v3ServiceNameAndUnsupportedMethods() async throws {
            let harness = try await TaskHarness()
            var connect = Containerd_Task_V2_ConnectRequest()
            connect.id = "none"
            let connected = try await harness.call(ContainerdTaskAPI.connect, connect, service: ContainerdTaskAPI.serviceNameV3)
            #expect(connected.shimPid == harness.shimPID)
            #expect(connected.version.hasPrefix("wasmletd"))
            var exec = Containerd_Task_V2_ExecProcessRequest()
            exec.id = "none"
            let execStatus = await statusCode { _ = try await harness.call(ContainerdTaskAPI.exec, exec) }
            #expect(execStatus?.0 == .unimplemented)
            var pause = Containerd_Task_V2_PauseRequest()
            pause.id = "none"
            #expect(await statusCode { _ = try await harness.call(ContainerdTaskAPI.pause, pause) }?.0 == .unimplemented)
            var update = Containerd_Task_V2_UpdateTaskRequest()
            update.id = "none"
            #expect(await statusCode { _ = try await harness.call(ContainerdTaskAPI.update, update) }?.0 == .unimplemented)
            _ = try await harness.call(ContainerdTaskAPI.shutdown, Containerd_Task_V2_ShutdownRequest())
            await harness.stop()
        }

        @Test func exitCodesKillAndStats() async throws {
            let harness = try await TaskHarness()
            // A guest's own non-zero code comes through as is (membomb: 3 when malloc fails).
            let bomb = try harness.bundle("bomb", module: "membomb", memoryLimit: 8 << 20)
            _ = try await harness.create("bomb", bundle: bomb)
            _ = try await harness.start("bomb")
            #expect(try await harness.wait("bomb").exitStatus == 3)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { harness.events.topics(for: "bomb").contains("/tasks/oom") })
            #expect(harness.events.topics(for: "bomb") == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/oom"])

            // SIGTERM ends a sleeper with 128+15; a second kill says it already finished.
            let sleeper = try harness.bundle("sleep", module: "sleeper")
            _ = try await harness.create("sleep", bundle: sleeper)
            _ = try await harness.start("sleep")
            #expect(try await harness.state("sleep").status == .running)
            var stats = Containerd_Task_V2_StatsRequest()
            stats.id = "sleep"
            let any = try await harness.call(ContainerdTaskAPI.stats, stats).stats
            #expect(any.typeURL == "io.containerd.cgroups.v1.Metrics")
            let metrics = try Io_Containerd_Cgroups_V1_Metrics(serializedBytes: any.value)
            #expect(metrics.memory.usage.limit > 0)
            // Start answers once the guest's thread runs; its linear memory exists once it has
            // instantiated, a moment later.
            #expect(
                try await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
                    let any = try await harness.call(ContainerdTaskAPI.stats, stats).stats
                    return try Io_Containerd_Cgroups_V1_Metrics(serializedBytes: any.value).memory.usage.usage > 0
                })
            var pids = Containerd_Task_V2_PidsRequest()
            pids.id = "sleep"
            #expect(try await harness.call(ContainerdTaskAPI.pids, pids).processes.map(\.pid) == [harness.shimPID])

            let running = await statusCode { _ = try await harness.delete("sleep") }
            #expect(running?.0 == .failedPrecondition)
            try await harness.kill("sleep", signal: 15, all: true)
            let exit = try await harness.wait("sleep")
            #expect(exit.exitStatus == 143)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { harness.events.exit(of: "sleep")?.exitStatus == 143 })
            let again = await statusCode { try await harness.kill("sleep", signal: 9) }
            #expect(again?.0 == .notFound)
            #expect(again?.1.contains("already finished") == true)
            #expect(try await harness.delete("sleep").exitStatus == 143)
            _ = try await harness.delete("bomb")
            await harness.stop()
        }

        /// A growth the node budget refuses (committed admission; the cap had room) is an OOM
        /// to containerd, as a cap hit is; a task beside it runs on.
        @Test func nodeBudgetDenialPublishesOOM() async throws {
            let harness = try await TaskHarness(arguments: ["--memory-budget", "8MiB"])
            let sleeper = try harness.bundle("neighbour", module: "sleeper")
            _ = try await harness.create("neighbour", bundle: sleeper)
            _ = try await harness.start("neighbour")
            // The default cap (128 MiB) is far past the whole budget.
            let bomb = try harness.bundle("bomb", module: "membomb")
            _ = try await harness.create("bomb", bundle: bomb)
            _ = try await harness.start("bomb")
            #expect(try await harness.wait("bomb").exitStatus == 3)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { harness.events.topics(for: "bomb").contains("/tasks/oom") })
            #expect(harness.events.topics(for: "bomb") == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/oom"])
            #expect(try await harness.state("neighbour").status == .running)
            try await harness.kill("neighbour", signal: 9)
            #expect(try await harness.wait("neighbour").exitStatus == 137)
            #expect(!harness.events.topics(for: "neighbour").contains("/tasks/oom"))
            await harness.stop()
        }

        @Test func podSandboxStaysUpUntilKilled() async throws {
            let harness = try await TaskHarness()
            let bundle = try harness.bundle(
                "sandbox", module: nil, args: ["/pause"],
                annotations: ["io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "sandbox"])
            _ = try await harness.create("sandbox", bundle: bundle)
            _ = try await harness.start("sandbox")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await harness.state("sandbox").status == .running)
            try await harness.kill("sandbox", signal: 9, all: true)
            #expect(try await harness.wait("sandbox").exitStatus == 137)
            _ = try await harness.delete("sandbox")
            await harness.stop()
        }

        @Test func cleanupDeleteEndsARunningTask() async throws {
            let harness = try await TaskHarness()
            let bundle = try harness.bundle("orphan", module: "sleeper")
            _ = try await harness.create("orphan", bundle: bundle)
            _ = try await harness.start("orphan")
            let deleted = try await harness.delete("orphan", cleanup: true)
            #expect(deleted.exitStatus == 137)
            #expect(await statusCode { _ = try await harness.state("orphan") }?.0 == .notFound)
            // A never-started task deleted by cleanup: containerd's "unknown" 137.
            _ = try await harness.create("never", bundle: try harness.bundle("never"))
            #expect(try await harness.delete("never", cleanup: true).exitStatus == 137)
            await harness.stop()
        }

        @Test func limitsFromAnnotations() async throws {
            let harness = try await TaskHarness()
            let hog = try harness.bundle("hog", module: "cpuhog", annotations: ["wasmlet.dev/fuel": "100000"])
            _ = try await harness.create("hog", bundle: hog)
            _ = try await harness.start("hog")
            #expect(try await harness.wait("hog").exitStatus == 134)
            let slow = try harness.bundle("slow", module: "sleeper", annotations: ["wasmlet.dev/timeout": "200ms"])
            _ = try await harness.create("slow", bundle: slow)
            _ = try await harness.start("slow")
            #expect(try await harness.wait("slow").exitStatus == 137)
            await harness.stop()
        }

        /// A daemon killed under running tasks: after the restart each reads as stopped with
        /// 137, and a task whose bundle containerd already removed is forgotten.
        @Test func tasksAfterDaemonRestart() async throws {
            let harness = try await TaskHarness()
            for id in ["kept", "orphan"] {
                _ = try await harness.create(id, bundle: try harness.bundle(id, module: "sleeper"))
                _ = try await harness.start(id)
            }
            harness.daemon.signal(SIGKILL)
            _ = await harness.daemon.waitForExit()
            await harness.client.close()
            try FileManager.default.removeItem(atPath: harness.directory.path + "/bundles/orphan")

            let restarted = try await DaemonProcess(directory: harness.directory, stateDirectory: harness.daemon.stateDirectory)
            defer { restarted.killAndReap() }
            let client = try await TTRPCClient.connect(unixSocketPath: restarted.socketPath)
            func call<Request, Response>(_ method: RPCMethod<Request, Response>, _ request: Request) async throws -> Response {
                try await client.call(
                    service: method.service, method: method.method, request: request, responseType: Response.self,
                    timeout: .seconds(10), metadata: harness.metadata)
            }
            var state = Containerd_Task_V2_StateRequest()
            state.id = "kept"
            let kept = try await call(ContainerdTaskAPI.state, state)
            #expect(kept.status == .stopped)
            #expect(kept.exitStatus == 137)
            var wait = Containerd_Task_V2_WaitRequest()
            wait.id = "kept"
            #expect(try await call(ContainerdTaskAPI.wait, wait).exitStatus == 137)
            var delete = Containerd_Task_V2_DeleteRequest()
            delete.id = "kept"
            #expect(try await call(ContainerdTaskAPI.delete, delete).exitStatus == 137)
            state.id = "orphan"
            #expect(await statusCode { _ = try await call(ContainerdTaskAPI.state, state) }?.0 == .notFound)
            await client.close()
            await harness.events.server.shutdown(gracePeriod: .zero)
        }

        @Test func badSpecsAreRefusedWithClearErrors() async throws {
            let harness = try await TaskHarness()
            let missing = try harness.bundle("missing", args: ["/nope.wasm"])
            let notFound = await statusCode { _ = try await harness.create("missing", bundle: missing) }
            #expect(notFound?.0 == .notFound)
            #expect(notFound?.1.contains("/nope.wasm") == true)

            let empty = try harness.bundle("empty", args: [])
            let noArgs = await statusCode { _ = try await harness.create("empty", bundle: empty) }
            #expect(noArgs?.0 == .invalidArgument)
            #expect(noArgs?.1.contains("process.args") == true)

            let badFuel = try harness.bundle("fuel", annotations: ["wasmlet.dev/fuel": "lots"])
            let fuel = await statusCode { _ = try await harness.create("fuel", bundle: badFuel) }
            #expect(fuel?.0 == .invalidArgument)
            #expect(fuel?.1.contains("wasmlet.dev/fuel") == true)

            let garbage = harness.directory.path + "/bundles/garbage"
            try FileManager.default.createDirectory(atPath: garbage, withIntermediateDirectories: true)
            try Data("{not json".utf8).write(to: URL(fileURLWithPath: garbage + "/config.json"))
            let bad = await statusCode { _ = try await harness.create("garbage", bundle: garbage) }
            #expect(bad?.0 == .invalidArgument)
            #expect(bad?.1.contains("config.json") == true)

            // A symlink in the image cannot point the daemon outside the rootfs.
            let escape = try harness.bundle("escape", module: nil, args: ["/link.wasm"])
            try FileManager.default.createSymbolicLink(atPath: escape + "/rootfs/link.wasm", withDestinationPath: example("hello"))
            let escaped = await statusCode { _ = try await harness.create("escape", bundle: escape) }
            #expect(escaped?.0 == .notFound)

            // No namespace at all: refused, not guessed.
            var create = Containerd_Task_V2_CreateTaskRequest()
            create.id = "nons"
            create.bundle = missing
            let noNamespace = await statusCode {
                _ = try await harness.client.call(
                    service: ContainerdTaskAPI.serviceNameV2, method: "Create", request: create,
                    responseType: Containerd_Task_V2_CreateTaskResponse.self)
            }
            #expect(noNamespace?.0 == .invalidArgument)
            #expect(harness.daemon.isRunning)
            await harness.stop()
        }
    }
}
