import Dispatch
import Foundation
import Logging
import Testing
import WasmletAPI
import WasmletRuntime
import WasmletTTRPC
import WasmletTestSupport

@testable import WasmletContainerd
@testable import WasmletService
@testable import WasmletStore

/// A latch that blocks threads until it is opened (once; opening again does nothing).
private final class Gate: @unchecked Sendable {
    private let condition = NSCondition()
    private var isOpen = false

    func wait() {
        condition.lock()
        while !isOpen { condition.wait() }
        condition.unlock()
    }

    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }
}

/// containerd's Create and Delete wait for their record to be durable by suspending, not by
/// blocking a thread of Swift's shared concurrency pool (which has one thread per core): with the
/// journal writer held, many Creates and Deletes in flight at once must all get as far as the
/// runtime. A blocking wait would hold a pool thread per request, so after a core's worth of
/// requests nothing else (the rest of the requests included) could run until the flush.
@Suite struct TaskServiceSuspensionTests {
    let namespace = "k8s.io"
    /// Well past the pool's width on any machine this runs on.
    let count = max(64, ProcessInfo.processInfo.activeProcessorCount * 8)

    @Test func createAndDeleteSuspendWhileTheJournalIsHeld() async throws {
        let directory = try TemporaryDirectory()
        let store = try InstanceStore(stateDirectory: directory.path + "/state")
        _ = try store.recover()
        var configuration = RuntimeConfiguration()
        configuration.defaultMemoryCapBytes = 1 << 20
        let runtime = try WasmletRuntime(configuration: configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let instances = InstanceService(runtime: runtime, store: store, directory: InstanceDirectory(), logger: logger)
        let tasks = ContainerdTaskService(instances: instances, publisher: TaskEventPublisher(logger: logger), logger: logger)
        // A pod sandbox: the module is built in, so the bundle needs only its config.json.
        let bundle = directory.path + "/bundle"
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        try Data(
            #"{"ociVersion":"1.0.2","process":{"args":["/pause"],"cwd":"/"},"root":{"path":"rootfs"},"annotations":{"io.kubernetes.cri.container-type":"sandbox"}}"#
                .utf8
        ).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        let context = TTRPCCallContext(
            service: ContainerdTaskAPI.serviceNameV2, method: "Create", streamID: 1,
            metadata: ["wasmlet-shim-namespace": namespace, "wasmlet-shim-pid": "4242"])
        let sandbox = try runtime.loadModule(bytes: SandboxModule.bytes).digest
        let namespace = self.namespace
        let count = self.count
        let live: @Sendable () -> Int = { runtime.list(namespace: namespace).count }

        // Creates: all of them reach the runtime while the writer is held.
        let firstHold = Gate()
        hold(instances, digest: sandbox, id: "hold-1", gate: firstHold)
        let creates = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        var request = Containerd_Task_V2_CreateTaskRequest()
                        request.id = "task-\(index)"
                        request.bundle = bundle
                        _ = try await tasks.create(context, request)
                    }
                }
                try await group.waitForAll()
            }
        }
        let allCreated = await Self.untilOnADispatchQueue({ live() == count }, orElse: firstHold.open)
        #expect(allCreated, "\(live()) of \(count) Creates reached the runtime while the journal was held")
        firstHold.open()
        try await creates.value
        #expect(live() == count)
        store.flush()  // the record files lag the journal a little
        #expect(FileManager.default.fileExists(atPath: store.path(for: InstanceKey(namespace: namespace, id: "task-0"))))

        // Deletes: likewise, all of them take the instance out of the runtime while the writer is held.
        let secondHold = Gate()
        hold(instances, digest: sandbox, id: "hold-2", gate: secondHold)
        let deletes = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        var request = Containerd_Task_V2_DeleteRequest()
                        request.id = "task-\(index)"
                        _ = try await tasks.delete(context, request)
                    }
                }
                try await group.waitForAll()
            }
        }
        let allDeleted = await Self.untilOnADispatchQueue({ live() == 0 }, orElse: secondHold.open)
        #expect(allDeleted, "\(count - live()) of \(count) Deletes reached the runtime while the journal was held")
        secondHold.open()
        try await deletes.value
        store.flush()
        #expect(!FileManager.default.fileExists(atPath: store.path(for: InstanceKey(namespace: namespace, id: "task-0"))))
    }

    /// Holds the store's writer thread: a Create whose completion (run on the writer thread once
    /// its record is durable) waits for `gate`. Returns once the writer is inside it.
    private func hold(_ instances: InstanceService, digest: String, id: String, gate: Gate) {
        let inside = DispatchSemaphore(value: 0)
        let spec = InstanceSpec(key: InstanceKey(namespace: "hold", id: id), moduleDigest: "", args: ["pause"])
        instances.create(spec, module: .digest(digest)) { _ in
            inside.signal()
            gate.wait()
        }
        inside.wait()
    }

    /// Polls `condition` on a dispatch queue (the concurrency pool may be the thing that is
    /// stuck, so nothing here may need it until the verdict); after the hang guard, calls
    /// `orElse` (to release what holds the pool) and answers false.
    private static func untilOnADispatchQueue(
        _ condition: @escaping @Sendable () -> Bool, orElse release: @escaping @Sendable () -> Void
    ) async -> Bool {
        await withCheckedContinuation { continuation in
            DispatchQueue(label: "test.watch").async {
                let end = DispatchTime.now() + .seconds(60)
                while !condition() {
                    if DispatchTime.now() > end {
                        release()
                        continuation.resume(returning: false)
                        return
                    }
                    usleep(10_000)
                }
                continuation.resume(returning: true)
            }
        }
    }
}
