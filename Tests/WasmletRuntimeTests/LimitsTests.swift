import Foundation
import Testing
@testable import WasmletRuntime

@Suite struct LimitsTests {
    @Test func memoryCapStopsAMemoryBomb() async throws {
        let runtime = try Fixtures.makeRuntime()
        let cap: UInt64 = 16 << 20
        let result = try await Fixtures.run(runtime, guest: "membomb", limits: InstanceLimits(memoryBytes: cap))
        #expect(result.exit.code == 3, "membomb exits 3 once malloc fails")
        #expect(result.exit.memoryLimitHit)
        #expect(result.exit.peakMemoryBytes <= cap)
        #expect(result.exit.peakMemoryBytes >= cap / 2)
        #expect(result.stdout.contains("allocated"))
    }

    @Test func capBelowInitialMemoryFailsToStart() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 4) (func (export "_start")))"#))
        let result = try await Fixtures.run(runtime, digest: module.digest, limits: InstanceLimits(memoryBytes: 65536))
        #expect(result.exit.reason == .failedToStart)
        #expect(result.exit.memoryLimitHit)
        #expect(result.exit.message.contains("below the module's initial memory"))
    }

    @Test func memoryGrowBeyondCapReturnsMinusOne() async throws {
        let runtime = try Fixtures.makeRuntime()
        // Exits with 1 when memory.grow returned -1, 0 otherwise.
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"""
            (module
              (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 1)
              (func (export "_start")
                (call $exit (i32.eq (memory.grow (i32.const 100)) (i32.const -1)))))
            """#))
        let capped = try await Fixtures.run(runtime, digest: module.digest, limits: InstanceLimits(memoryBytes: 1 << 20))
        #expect(capped.exit.code == 1)
        #expect(capped.exit.memoryLimitHit)
        let roomy = try await Fixtures.run(runtime, digest: module.digest, limits: InstanceLimits(memoryBytes: 16 << 20))
        #expect(roomy.exit.code == 0)
        #expect(!roomy.exit.memoryLimitHit)
        #expect(roomy.exit.peakMemoryBytes == 101 * 65536)
    }

    @Test func fuelBudgetEndsAnInfiniteLoop() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cpuhog", limits: InstanceLimits(fuel: 2_000_000))
        #expect(result.exit.reason == .outOfFuel)
        #expect(result.exit.code == 134)
        #expect(result.exit.fuelConsumed <= 2_000_000)
        #expect(result.exit.fuelConsumed > 1_900_000)
    }

    @Test func enoughFuelLetsAGuestFinish() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "hello", limits: InstanceLimits(fuel: 10_000_000))
        #expect(result.exit.code == 0)
        #expect(result.exit.fuelConsumed < 10_000_000)
    }

    @Test func deadlineEndsASleeper() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "sleeper", limits: InstanceLimits(timeoutMilliseconds: 200))
        #expect(result.exit.reason == .deadlineExceeded)
        #expect(result.exit.code == 137)
        #expect(result.exit.message == "deadline of 200 ms exceeded")
    }

    @Test func deadlineEndsAComputeLoop() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cpuhog", limits: InstanceLimits(timeoutMilliseconds: 150))
        #expect(result.exit.reason == .deadlineExceeded)
        #expect(result.exit.fuelConsumed > 0)
        #expect(result.exit.cpuTimeNanoseconds > 0)
    }

    @Test func deepRecursionTrapsCleanly() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "recurse")
        #expect(result.exit.reason == .trapped)
        #expect(result.exit.message.contains("call stack exhausted"))
        #expect(result.exit.code == 134)
    }

    @Test func smallerStackExhaustsSooner() async throws {
        let runtime = try Fixtures.makeRuntime()
        let fits = try await Fixtures.run(runtime, guest: "recurse", args: ["2000"])
        #expect(fits.exit.code == 0)
        let small = try await Fixtures.run(runtime, guest: "recurse", args: ["2000"], limits: InstanceLimits(stackBytes: 32 << 10))
        #expect(small.exit.reason == .trapped)
    }

    @Test func admissionCapsLiveInstances() throws {
        let runtime = try Fixtures.makeRuntime { $0.maxInstances = 2 }
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        for id in ["a", "b"] {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: id), moduleDigest: module.digest))
        }
        let error = #expect(throws: RuntimeError.self) {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: "c"), moduleDigest: module.digest))
        }
        #expect(error?.kind == .resourceExhausted)
        try runtime.delete(InstanceKey(namespace: "n", id: "a"))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: "c"), moduleDigest: module.digest))
    }

    @Test func theKernelsCeilingCapsLiveInstancesBelowMaxInstancesAndIsNamed() throws {
        let runtime = try Fixtures.makeRuntime {
            $0.maxInstances = 10
            $0.instanceCeiling = InstanceCeiling(instances: 2, limit: "vm.max_map_count=65530")
        }
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        for id in ["a", "b"] {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: id), moduleDigest: module.digest))
        }
        let error = #expect(throws: RuntimeError.self) {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: "c"), moduleDigest: module.digest))
        }
        #expect(error?.kind == .resourceExhausted)
        #expect(error?.message == "instance limit reached: 2 live instances, the most this node's vm.max_map_count=65530 leaves room for (raise it to run more)")
        try runtime.delete(InstanceKey(namespace: "n", id: "a"))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: "c"), moduleDigest: module.digest))
    }

    @Test func theCeilingIsTheSmallestHeadroomOverTheKernelsLimits() {
        // 65,530 mappings, 530 in use, a reserve of 6,553, three per instance: 19,482.
        let maps = InstanceCeiling.Limits(
            maxMapCount: 65_530, mappingsInUse: 530, systemThreadsMax: 32_768, systemThreadsInUse: 500,
            cgroupPidsMax: nil, cgroupPidsInUse: 0)
        #expect(InstanceCeiling.from(maps) == InstanceCeiling(instances: 19_482, limit: "vm.max_map_count=65530"))
        // pid_max 32,768 with 12,000 threads on the node, a reserve of 3,276: 17,492.
        var pids = maps
        pids.systemThreadsInUse = 12_000
        #expect(InstanceCeiling.from(pids) == InstanceCeiling(instances: 17_492, limit: "kernel.pid_max=32768"))
        // systemd's TasksMax=4915 on the unit's cgroup, 20 tasks in it, a reserve of 491.
        var cgroup = maps
        cgroup.cgroupPidsMax = 4_915
        cgroup.cgroupPidsInUse = 20
        #expect(InstanceCeiling.from(cgroup) == InstanceCeiling(instances: 4_404, limit: "pids.max=4915"))
        // A limit already used up leaves no room, never a negative count.
        var full = maps
        full.mappingsInUse = 65_000
        #expect(InstanceCeiling.from(full)?.instances == 0)
        #expect(InstanceCeiling.from(InstanceCeiling.Limits(
            maxMapCount: nil, mappingsInUse: 0, systemThreadsMax: nil, systemThreadsInUse: 0, cgroupPidsMax: nil, cgroupPidsInUse: 0)) == nil)
    }

    @Test func thisMachinesCeilingIsReadFromProc() throws {
        let ceiling = try #require(InstanceCeiling.ofThisProcess(), "vm.max_map_count and kernel.pid_max are readable here")
        #expect(ceiling.instances > 1_000)
        #expect(["vm.max_map_count=", "kernel.pid_max=", "kernel.threads-max=", "pids.max="].contains { ceiling.limit.contains($0) }, "\(ceiling)")
    }

    @Test func reserveCapsAdmissionEnforcesTheNodeMemoryBudget() async throws {
        let runtime = try Fixtures.makeRuntime {
            $0.memoryBudgetBytes = 100 << 20
            $0.memoryAdmission = .reserveCaps
        }
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: "a"), moduleDigest: module.digest, limits: InstanceLimits(memoryBytes: 60 << 20)))
        let error = #expect(throws: RuntimeError.self) {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: "b"), moduleDigest: module.digest, limits: InstanceLimits(memoryBytes: 60 << 20)))
        }
        #expect(error?.kind == .resourceExhausted)
        #expect(error?.message.contains("memory budget") == true)
        #expect(runtime.statistics().memoryReservedBytes == 60 << 20)
        // The reservation is released when the instance exits.
        try runtime.start(InstanceKey(namespace: "n", id: "a"))
        _ = try await runtime.wait(InstanceKey(namespace: "n", id: "a"))
        #expect(runtime.statistics().memoryReservedBytes == 0)
        try runtime.create(InstanceSpec(key: InstanceKey(namespace: "n", id: "b"), moduleDigest: module.digest, limits: InstanceLimits(memoryBytes: 60 << 20)))
    }
}
