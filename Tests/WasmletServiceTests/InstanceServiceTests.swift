import Foundation
import Logging
import Synchronization
import Testing
import WasmletRuntime
import WasmletTestSupport

@testable import WasmletService
@testable import WasmletStore

/// The one instance service both APIs call, alone: value types in and out, records on disk,
/// and the completion-to-async bridge's cancellation.
@Suite struct InstanceServiceTests {
    let directory: TemporaryDirectory
    let store: InstanceStore
    let instances: InstanceService

    init() throws {
        directory = try TemporaryDirectory()
        store = try InstanceStore(stateDirectory: directory.path + "/state")
        _ = try store.recover()
        var configuration = RuntimeConfiguration()
        configuration.defaultMemoryCapBytes = 16 << 20
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        instances = InstanceService(
            runtime: try WasmletRuntime(configuration: configuration), store: store, directory: InstanceDirectory(),
            logger: logger)
    }

    @Test func aLifecycleInValues() async throws {
        let key = InstanceKey(namespace: "test", id: "echo")
        let spec = InstanceSpec(key: key, moduleDigest: "", args: ["echo", "hi"], stdio: StdioSpec(stdout: "/dev/null"))
        let created = try await awaitCompletion { instances.create(spec, module: .path(example("echo")), completion: $0) }
        #expect(created.state == .created)
        #expect(created.modulePath == example("echo"))
        #expect(created.moduleDigest.hasPrefix("sha256:"))
        // Durable once create completes: the record file lags the journal, so flush it first.
        store.flush()
        #expect(FileManager.default.fileExists(atPath: store.path(for: key)))

        // The module is cached by path now, and a second create of the key is refused.
        #expect(!instances.createNeedsModuleLoad(.path(example("echo"))))
        await #expect(throws: RuntimeError.self) {
            try await awaitCompletion { instances.create(spec, module: .path(example("echo")), completion: $0) }
        }

        #expect(try instances.start(key).state == .running)
        let exit = try await awaitCancellable { instances.wait(key, completion: $0) }
        #expect(exit.code == 0)
        #expect(exit.reason == .exited)
        #expect(try instances.inspect(key).exit == exit)

        let deleted = try await awaitCompletion { instances.delete(key, completion: $0) }
        #expect(deleted == exit)
        store.flush()
        #expect(!FileManager.default.fileExists(atPath: store.path(for: key)))
        #expect(throws: RuntimeError.self) { try instances.inspect(key) }
        #expect(instances.statistics().instancesCreated == 1)
        #expect(instances.statistics().instancesDeleted == 1)
    }

    /// A module that is neither a path nor cached is NOT_FOUND, before anything is created.
    @Test func anUnknownDigestCreatesNothing() async throws {
        let key = InstanceKey(namespace: "test", id: "nothing")
        await #expect {
            try await awaitCompletion {
                instances.create(InstanceSpec(key: key, moduleDigest: ""), module: .digest("sha256:00"), completion: $0)
            }
        } throws: { ($0 as? RuntimeError)?.kind == .notFound }
        #expect(throws: RuntimeError.self) { try instances.inspect(key) }
    }

    /// Giving up a wait (deadline, closed connection) ends the wait, not the guest.
    @Test(.timeLimit(.minutes(1))) func cancellingAWaitLeavesTheGuestRunning() async throws {
        let key = InstanceKey(namespace: "test", id: "sleeper")
        let spec = InstanceSpec(key: key, moduleDigest: "", args: ["sleeper"], stdio: StdioSpec(stdout: "/dev/null"))
        _ = try await awaitCompletion { instances.create(spec, module: .path(example("sleeper")), completion: $0) }
        _ = try instances.start(key)
        let waiting = Task { try await awaitCancellable { instances.wait(key, completion: $0) } }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        #expect(try instances.inspect(key).state == .running)

        try instances.kill(key, signal: 0)  // 0 is SIGKILL
        let exit = try await awaitCancellable { instances.wait(key, completion: $0) }
        #expect(exit.reason == .killed)
        _ = try await awaitCompletion { instances.delete(key, completion: $0) }
    }

    /// A task cancelled before the operation hands back its cancel handle still cancels it:
    /// the handle runs as soon as it is set (else this would never finish).
    @Test(.timeLimit(.minutes(1))) func aCancelBeforeTheHandleIsSetStillCancels() async throws {
        let called = Counter()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await awaitCancellable { (done: @escaping InstanceService.Completion<Int>) in
                { called.increment(); done(.failure(CancellationError())) }
            }
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(called.value == 1)
    }

    /// Draining refuses new work and keeps the rest.
    @Test func drainingRefusesCreateAndStart() async throws {
        let key = InstanceKey(namespace: "test", id: "late")
        let spec = InstanceSpec(key: key, moduleDigest: "", args: ["echo"], stdio: StdioSpec(stdout: "/dev/null"))
        _ = try await awaitCompletion { instances.create(spec, module: .path(example("echo")), completion: $0) }
        instances.beginDraining()
        #expect { try instances.start(key) } throws: { ($0 as? RuntimeError)?.kind == .unavailable }
        let other = InstanceSpec(key: InstanceKey(namespace: "test", id: "later"), moduleDigest: "", args: ["echo"])
        await #expect {
            try await awaitCompletion { instances.create(other, module: .path(example("echo")), completion: $0) }
        } throws: { ($0 as? RuntimeError)?.kind == .unavailable }
        #expect(try await awaitCompletion { instances.delete(key, completion: $0) } == nil)
    }
}

private final class Counter: Sendable {
    private let count = Mutex<Int>(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
