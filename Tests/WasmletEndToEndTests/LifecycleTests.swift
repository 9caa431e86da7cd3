import Foundation
import Testing
import WasmletAPI
import WasmletTTRPC
import WasmletTestSupport

extension DaemonEndToEndTests {
    /// The whole API through the real socket of a real daemon.
    @Suite struct Lifecycle {
        @Test func createStartWaitInspectListKillDeleteStatsVersion() async throws {
            let directory = try TemporaryDirectory()
            let daemon = try await DaemonProcess(directory: directory)
            defer { daemon.killAndReap() }
            let client = try await daemon.client()

            let created = try await client.create("hello-1", module: example("hello"), labels: ["app": "hello", "tier": "a"])
            #expect(created.state == .created)
            #expect(created.moduleDigest.hasPrefix("sha256:"))
            #expect(created.modulePath == example("hello"))
            #expect(created.serial != 0)
            let started = try await client.start("hello-1")
            #expect(started.state == .running || started.state == .exited)
            let exit = try await client.wait("hello-1")
            #expect(exit.code == 0)
            #expect(exit.reason == .exited)

            let inspected = try await client.inspect("hello-1")
            #expect(inspected.state == .exited)
            #expect(inspected.exit.code == 0)
            #expect(inspected.labels == ["app": "hello", "tier": "a"])
            #expect(inspected.hasStartedAt)

            // List: namespace and label filters.
            _ = try await client.create("sleeper-1", module: example("sleeper"), labels: ["app": "sleeper"])
            _ = try await client.create("other-ns", module: example("hello"), namespace: "elsewhere", labels: ["app": "hello"])
            #expect(try await client.list(labels: ["app": "hello"]).map(\.id) == ["other-ns", "hello-1"])
            #expect(try await client.list(namespace: "test").map(\.id) == ["hello-1", "sleeper-1"])
            #expect(try await client.list(namespace: "test", labels: ["app": "hello", "tier": "a"]).map(\.id) == ["hello-1"])
            #expect(try await client.list(labels: ["app": "nope"]).isEmpty)

            // Kill of a sleeper that blocks in poll_oneoff.
            _ = try await client.start("sleeper-1")
            #expect(try await client.inspect("sleeper-1").state == .running)
            try await client.kill("sleeper-1", signal: 9)
            let killed = try await client.wait("sleeper-1")
            #expect(killed.reason == .killed)
            #expect(killed.code == 137)
            #expect(killed.signal == 9)

            let stats = try await client.stats()
            #expect(stats.instancesCreated == 3)
            #expect(stats.exited == 2)
            #expect(stats.created == 1)
            #expect(stats.running == 0)
            #expect(stats.memoryBudgetBytes > 0)

            // Delete returns the exit and forgets the instance (and its record file).
            let deleted = try await client.delete("hello-1")
            #expect(deleted.exit.code == 0)
            let recordFile = daemon.stateDirectory + "/instances/test/sleeper-1.json"
            // Record files follow the journal (the durable copy) within milliseconds.
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { FileManager.default.fileExists(atPath: recordFile) })
            _ = try await client.delete("sleeper-1")
            #expect(!FileManager.default.fileExists(atPath: recordFile))
            #expect(try await client.stats().instancesDeleted == 2)

            let version = try await client.version()
            #expect(version.apiVersion == "wasmlet.v1")
            #expect(!version.version.isEmpty)
            #expect(version.engine.contains("WasmKit"))
            await client.close()
        }

        @Test func errorsUseContainerdCodes() async throws {
            let directory = try TemporaryDirectory()
            let daemon = try await DaemonProcess(directory: directory)
            defer { daemon.killAndReap() }
            let client = try await daemon.client()

            let unknown = await statusCode { _ = try await client.inspect("nobody-home") }
            #expect(unknown?.0 == .notFound)
            #expect(await statusCode { _ = try await client.wait("nobody-home") }?.0 == .notFound)
            #expect(await statusCode { try await client.kill("nobody-home") }?.0 == .notFound)
            #expect(await statusCode { _ = try await client.delete("nobody-home") }?.0 == .notFound)
            #expect(await statusCode { _ = try await client.start("nobody-home") }?.0 == .notFound)

            _ = try await client.create("dup", module: example("hello"))
            let duplicate = await statusCode { _ = try await client.create("dup", module: example("hello")) }
            #expect(duplicate?.0 == .alreadyExists)

            // A file that is not WebAssembly: INVALID_ARGUMENT with the validator's reason.
            let garbage = directory.path + "/garbage.wasm"
            try Data("this is not wasm".utf8).write(to: URL(fileURLWithPath: garbage))
            let bad = await statusCode { _ = try await client.create("bad", module: garbage) }
            #expect(bad?.0 == .invalidArgument)
            #expect(bad?.1.contains("garbage.wasm") == true || bad?.1.lowercased().contains("magic") == true, "\(bad?.1 ?? "")")
            #expect(await statusCode { _ = try await client.create("rel", module: "relative.wasm") }?.0 == .invalidArgument)

            // A payload that is not the method's request message: INVALID_ARGUMENT naming it, for
            // the handlers that answer with bytes too; the connection goes on working.
            let notProtobuf: [UInt8] = [0xFF, 0xFF, 0xFF]
            for method in [WasmletRuntimeAPI.inspect.method, WasmletRuntimeAPI.list.method] {
                let refused = await statusCode {
                    _ = try await client.connection.call(
                        service: WasmletRuntimeAPI.inspect.service, method: method, payload: notProtobuf, timeout: .seconds(30))
                }
                #expect(refused?.0 == .invalidArgument)
                #expect(refused?.1.contains("request is not a valid") == true, "\(refused?.1 ?? "")")
            }
            #expect(try await client.inspect("dup").id == "dup")

            // Wrong state: start twice, delete while running.
            _ = try await client.create("s", module: example("sleeper"))
            _ = try await client.start("s")
            #expect(await statusCode { _ = try await client.start("s") }?.0 == .failedPrecondition)
            #expect(await statusCode { _ = try await client.delete("s") }?.0 == .failedPrecondition)

            // Wait honours the request timeout (the sleeper sleeps for ever).
            let timedOut = await statusCode { _ = try await client.wait("s", timeout: .milliseconds(300)) }
            #expect(timedOut?.0 == .deadlineExceeded)
            try await client.kill("s")
            #expect(try await client.wait("s").reason == .killed)
            await client.close()
        }

        /// List and Inspect answer from encoded instances kept between calls: every change of
        /// state, a delete, and a new instance under an old id must show in the very next call.
        @Test func listFollowsEveryChangeAfterBeingCached() async throws {
            let directory = try TemporaryDirectory()
            let daemon = try await DaemonProcess(directory: directory)
            defer { daemon.killAndReap() }
            let client = try await daemon.client()
            func listed() async throws -> [String: Wasmlet_V1_Instance] {
                Dictionary(uniqueKeysWithValues: try await client.list().map { ($0.id, $0) })
            }
            _ = try await client.create("a", module: example("hello"))
            _ = try await client.create("b", module: example("sleeper"), labels: ["keep": "yes"])
            var all = try await listed()
            #expect(all["a"]?.state == .created && all["b"]?.state == .created)
            // A filtered List fills the cache too; the full one after it must agree with it.
            #expect(try await client.list(labels: ["keep": "yes"]).map(\.id) == ["b"])

            _ = try await client.start("a")
            _ = try await client.wait("a")
            _ = try await client.start("b")
            all = try await listed()
            #expect(all["a"]?.state == .exited && all["a"]?.exit.reason == .exited && all["a"]?.hasStartedAt == true)
            #expect(all["b"]?.state == .running && all["b"]?.hasExit == false)
            #expect(try await client.inspect("a") == all["a"])
            #expect(try await client.inspect("b") == all["b"])

            try await client.kill("b", signal: 9)
            _ = try await client.wait("b")
            #expect(try await listed()["b"]?.exit.code == 137)
            #expect(try await client.inspect("b").exit.code == 137)

            let oldSerial = all["a"]?.serial
            _ = try await client.delete("a")
            #expect(try await listed()["a"] == nil)
            #expect(await statusCode { _ = try await client.inspect("a") }?.0 == .notFound)
            _ = try await client.create("a", module: example("hello"), labels: ["new": "1"])
            #expect(try await client.inspect("a").labels == ["new": "1"])
            let again = try await listed()["a"]
            #expect(again?.state == .created && again?.labels == ["new": "1"] && again?.serial != oldSerial)
            #expect(try await client.list(labels: ["new": "1"]).map(\.id) == ["a"])
            await client.close()
        }
    }
}
