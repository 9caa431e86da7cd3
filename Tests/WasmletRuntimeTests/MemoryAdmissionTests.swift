import Foundation
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

/// Committed admission (the default) counts what guests commit against the node budget, not
/// the sum of their caps; reserve-caps admission reserves each cap at create.
@Suite struct MemoryAdmissionTests {
    /// Sleeps in poll_oneoff (an hour at a time) until killed; one page of memory.
    static let sleeper = #"""
        (module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            ;; One clock subscription at 0: tag 0 (clock), id 1 (monotonic), timeout 1 h.
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const 3600000000000))
            (loop $forever
              (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
              (br $forever))))
        """#

    /// Exits with 1 when growing memory by `pages` pages returned -1, 0 when it worked.
    static func grower(pages: Int) -> String {
        """
        (module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (call $exit (i32.eq (memory.grow (i32.const \(pages))) (i32.const -1)))))
        """
    }

    /// What committed admission charges per instance with the default stack, before memory.
    static func overhead(_ configuration: RuntimeConfiguration) -> UInt64 {
        configuration.instanceOverheadBytes + configuration.defaultStackBytes
    }

    static func spec(_ id: String, _ digest: String, limits: InstanceLimits = InstanceLimits()) -> InstanceSpec {
        InstanceSpec(key: InstanceKey(namespace: "admission", id: id), moduleDigest: digest, args: ["guest"], limits: limits)
    }

    @Test func exitRecordsWrittenBeforeTheBudgetFlagDecode() throws {
        let record = ExitRecord(code: 3, reason: .exited, memoryLimitHit: true, memoryBudgetHit: true)
        var object = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(record)) as? [String: Any])
        #expect(object["memoryBudgetHit"] as? Bool == true)
        object["memoryBudgetHit"] = nil
        let old = try JSONDecoder().decode(ExitRecord.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(old.memoryLimitHit)
        #expect(!old.memoryBudgetHit)
        #expect(try JSONDecoder().decode(ExitRecord.self, from: JSONEncoder().encode(record)) == record)
    }

    @Test func committedIsTheDefault() {
        #expect(RuntimeConfiguration().memoryAdmission == .committed)
    }

    @Test func nodeBudgetDenialFailsTheGrowWhileANeighbourKeepsRunning() async throws {
        let defaults = RuntimeConfiguration()
        // Room for two instances' overhead and a few pages, far below either cap (128 MiB).
        let budget = 2 * Self.overhead(defaults) + (8 << 16)
        let runtime = try Fixtures.makeRuntime { $0.memoryBudgetBytes = budget }
        let sleeper = try runtime.loadModule(bytes: Fixtures.wat(Self.sleeper))
        let neighbour = Self.spec("neighbour", sleeper.digest)
        try runtime.create(neighbour)
        try runtime.start(neighbour.key)
        #expect(await eventually(every: .milliseconds(5)) { runtime.statistics().guestsBlockedInHostCalls == 1 })
        #expect(runtime.statistics().memoryChargedBytes == Self.overhead(defaults) + 65536)

        // 100 more pages fit its cap but not the node: memory.grow returns -1.
        let grower = try runtime.loadModule(bytes: Fixtures.wat(Self.grower(pages: 100)))
        let denied = try await Fixtures.run(runtime, digest: grower.digest)
        #expect(denied.exit.reason == .exited)
        #expect(denied.exit.code == 1, "memory.grow returned -1")
        #expect(denied.exit.memoryBudgetHit)
        #expect(!denied.exit.memoryLimitHit)
        #expect(denied.exit.memoryExhausted)
        #expect(denied.exit.peakMemoryBytes == 65536)
        #expect(runtime.statistics().memoryBudgetDenials == 1)

        // A growth that fits still works, and the neighbour never noticed.
        let fits = try await Fixtures.run(runtime, digest: try runtime.loadModule(bytes: Fixtures.wat(Self.grower(pages: 2))).digest)
        #expect(fits.exit.code == 0)
        #expect(!fits.exit.memoryBudgetHit)
        #expect(try runtime.inspect(neighbour.key).state == .running)
        #expect(runtime.statistics().memoryChargedBytes == Self.overhead(defaults) + 65536)
        try runtime.kill(neighbour.key)
        #expect(try await runtime.wait(neighbour.key).reason == .killed)
        #expect(runtime.statistics().memoryChargedBytes == 0)
        #expect(runtime.statistics().memoryBudgetDenials == 1)
    }

    @Test func nodeBudgetDenialAtInstantiationFailsToStart() async throws {
        let defaults = RuntimeConfiguration()
        let runtime = try Fixtures.makeRuntime { $0.memoryBudgetBytes = Self.overhead(defaults) + 3 * 65536 }
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 4) (func (export "_start")))"#))
        let result = try await Fixtures.run(runtime, digest: module.digest)
        #expect(result.exit.reason == .failedToStart)
        #expect(result.exit.memoryBudgetHit)
        #expect(!result.exit.memoryLimitHit)
        #expect(result.exit.message.contains("node memory budget exhausted"))
        #expect(runtime.statistics().memoryChargedBytes == 0)
    }

    @Test func committedAdmitsBeyondTheSumOfCaps() async throws {
        let runtime = try Fixtures.makeRuntime { $0.memoryBudgetBytes = 100 << 20 }
        let module = try runtime.loadModule(bytes: Fixtures.wat(Self.sleeper))
        let caps = InstanceLimits(memoryBytes: 60 << 20)
        for id in ["a", "b", "c"] { try runtime.create(Self.spec(id, module.digest, limits: caps)) }
        let statistics = runtime.statistics()
        #expect(statistics.memoryReservedBytes == 180 << 20, "caps add up past the budget")
        #expect(statistics.memoryChargedBytes == 3 * Self.overhead(runtime.configuration))
        for id in ["a", "b", "c"] { try runtime.delete(InstanceKey(namespace: "admission", id: id)) }
        #expect(runtime.statistics().memoryChargedBytes == 0)
        #expect(runtime.statistics().memoryReservedBytes == 0)
    }

    @Test func committedStillRefusesCreateWhenOverheadDoesNotFit() throws {
        let defaults = RuntimeConfiguration()
        let runtime = try Fixtures.makeRuntime { $0.memoryBudgetBytes = Self.overhead(defaults) }
        let module = try runtime.loadModule(bytes: Fixtures.wat(Self.sleeper))
        try runtime.create(Self.spec("a", module.digest))
        let error = #expect(throws: RuntimeError.self) { try runtime.create(Self.spec("b", module.digest)) }
        #expect(error?.kind == .resourceExhausted)
        #expect(error?.message.contains("bytes committed") == true)
    }

    @Test func reserveCapsRefusesAtCreate() async throws {
        let runtime = try Fixtures.makeRuntime {
            $0.memoryBudgetBytes = 100 << 20
            $0.memoryAdmission = .reserveCaps
        }
        let module = try runtime.loadModule(bytes: Fixtures.wat(Self.grower(pages: 100)))
        let caps = InstanceLimits(memoryBytes: 60 << 20)
        try runtime.create(Self.spec("a", module.digest, limits: caps))
        let error = #expect(throws: RuntimeError.self) { try runtime.create(Self.spec("b", module.digest, limits: caps)) }
        #expect(error?.kind == .resourceExhausted)
        #expect(error?.message.contains("bytes reserved, \(60 << 20) more asked") == true)
        #expect(runtime.statistics().memoryChargedBytes == 60 << 20)
        // Growth within a reserved cap never meets the budget.
        try runtime.start(InstanceKey(namespace: "admission", id: "a"))
        let exit = try await runtime.wait(InstanceKey(namespace: "admission", id: "a"))
        #expect(exit.code == 0)
        #expect(!exit.memoryBudgetHit)
        #expect(runtime.statistics().memoryChargedBytes == 0)
        try runtime.create(Self.spec("b", module.digest, limits: caps))
    }

    /// A thousand guests asleep at once, each with the default 128 MiB cap, in a budget of
    /// 1 GiB: reserving caps would stop at 8.
    @Test func aThousandSleepingGuestsWithDefaultCaps() async throws {
        let runtime = try Fixtures.makeRuntime { $0.memoryBudgetBytes = 1 << 30 }
        let module = try runtime.loadModule(bytes: Fixtures.wat(Self.sleeper))
        let count = 1_000
        var keys: [InstanceKey] = []
        for index in 0..<count {
            let spec = Self.spec("sleeper-\(index)", module.digest)
            try runtime.create(spec)
            try runtime.start(spec.key)
            keys.append(spec.key)
        }
        #expect(await eventually(every: .milliseconds(5)) { runtime.statistics().guestsBlockedInHostCalls == count })
        let statistics = runtime.statistics()
        #expect(statistics.running == count)
        #expect(statistics.memoryReservedBytes == UInt64(count) * (128 << 20))
        #expect(statistics.memoryChargedBytes == UInt64(count) * (Self.overhead(runtime.configuration) + 65536))
        #expect(statistics.memoryBudgetDenials == 0)
        for key in keys { try runtime.kill(key) }
        for key in keys { #expect(try await runtime.wait(key).reason == .killed) }
        #expect(runtime.statistics().memoryChargedBytes == 0)
    }
}
