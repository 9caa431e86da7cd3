import Foundation
import Testing
@testable import WasmletRuntime

/// Blocked and CPU-bound guests must not stop other guests from starting or finishing.
@Suite struct SchedulerTests {
    @Test func manyBlockedGuestsDoNotStarveOthers() async throws {
        // 300 guests asleep in poll_oneoff: far more than libdispatch's worker pool (64).
        let runtime = try Fixtures.makeRuntime()
        let sleeper = try runtime.loadModule(path: Fixtures.guest("sleeper"))
        var keys: [InstanceKey] = []
        for index in 0..<300 {
            let key = InstanceKey(namespace: "sched", id: "sleeper-\(index)")
            try runtime.create(InstanceSpec(key: key, moduleDigest: sleeper.digest, args: ["sleeper"], limits: InstanceLimits(memoryBytes: 1 << 20)))
            try runtime.start(key)
            keys.append(key)
        }
        #expect(await Fixtures.eventually(timeout: .seconds(20)) { runtime.statistics().running == 300 })
        let hello = try await Fixtures.run(runtime, guest: "hello")
        #expect(hello.stdout == "hello from wasmlet\n")
        for key in keys { try runtime.kill(key) }
        for key in keys { #expect(try await runtime.wait(key).reason == .killed) }
        #expect(runtime.statistics().running == 0)
    }

    @Test func shortGuestFinishesBesideCPUHogs() async throws {
        let runtime = try Fixtures.makeRuntime()
        let hog = try runtime.loadModule(path: Fixtures.guest("cpuhog"))
        var hogs: [InstanceKey] = []
        for index in 0..<4 {
            let key = InstanceKey(namespace: "sched", id: "hog-\(index)")
            try runtime.create(InstanceSpec(key: key, moduleDigest: hog.digest, args: ["cpuhog"]))
            try runtime.start(key)
            hogs.append(key)
        }
        let result = try await Fixtures.run(runtime, guest: "hello")
        #expect(result.exit.code == 0)
        #expect(result.stdout == "hello from wasmlet\n")
        for key in hogs { try runtime.kill(key) }
        for key in hogs { #expect(try await runtime.wait(key).reason == .killed) }
    }
}
