import Foundation
import Synchronization
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

@Suite struct LifecycleTests {
    @Test func statesAndEventsInOrder() async throws {
        let events = Mutex<[String]>([])
        let runtime = try WasmletRuntime(configuration: RuntimeConfiguration()) { event in
            let name: String
            switch event {
            case .created: name = "created"
            case .started: name = "started"
            case .exited(let snapshot): name = "exited:\(snapshot.exit?.code ?? -1)"
            case .deleted: name = "deleted"
            }
            events.withLock { $0.append(name) }
        }
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        let key = InstanceKey(namespace: "life", id: "one")
        let created = try runtime.create(InstanceSpec(key: key, labels: ["app": "demo"], moduleDigest: module.digest))
        #expect(created.state == .created)
        #expect(created.serial > 0)
        try runtime.start(key)
        let exit = try await runtime.wait(key)
        #expect(try runtime.inspect(key).state == .exited)
        #expect(try runtime.inspect(key).exit == exit)
        // Waiting again returns the same record.
        #expect(try await runtime.wait(key) == exit)
        try runtime.delete(key)
        #expect(await eventually(every: .milliseconds(5)) { events.withLock { $0 } == ["created", "started", "exited:0", "deleted"] })
    }

    @Test func idsAreUniquePerNamespace() throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "a", id: "x"), moduleDigest: module.digest))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "b", id: "x"), moduleDigest: module.digest))
        let error = #expect(throws: RuntimeError.self) {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "a", id: "x"), moduleDigest: module.digest))
        }
        #expect(error?.kind == .alreadyExists)
    }

    @Test func listFiltersByNamespaceAndLabels() throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "a", id: "1"), labels: ["app": "web"], moduleDigest: module.digest))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "a", id: "2"), labels: ["app": "db"], moduleDigest: module.digest))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "b", id: "3"), labels: ["app": "web"], moduleDigest: module.digest))
        #expect(runtime.list().count == 3)
        #expect(runtime.list(namespace: "a").map(\.key.id) == ["1", "2"])
        #expect(runtime.list(labels: ["app": "web"]).map(\.key.id) == ["1", "3"])
        #expect(runtime.list(namespace: "a", labels: ["app": "web"]).map(\.key.id) == ["1"])
    }

    @Test func unknownModuleAndBadIdsAreRejected() throws {
        let runtime = try Fixtures.makeRuntime()
        let missing = #expect(throws: RuntimeError.self) {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "a", id: "x"), moduleDigest: "sha256:" + String(repeating: "0", count: 64)))
        }
        #expect(missing?.kind == .notFound)
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        for bad in ["", "a/b", String(repeating: "x", count: 300)] {
            let error = #expect(throws: RuntimeError.self) {
                try runtime.create(InstanceSpec(key: InstanceKey(namespace: "a", id: bad), moduleDigest: module.digest))
            }
            #expect(error?.kind == .invalidArgument)
        }
    }
}

extension LifecycleTests {
    @Test func cancellingAWaitLeavesTheInstanceRunning() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("sleeper"))
        let key = InstanceKey(namespace: "life", id: "waited")
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, args: ["sleeper"]))
        try runtime.start(key)
        let waiter = Task { try await runtime.wait(key) }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(try runtime.inspect(key).state == .running)
        try runtime.kill(key)
        #expect(try await runtime.wait(key).reason == .killed)
    }
}
