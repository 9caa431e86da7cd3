import Foundation
import Testing
@testable import WasmletRuntime

/// A reused instance must look exactly like a fresh one to the guest.
@Suite struct InstanceReuseTests {
    /// Exits with 10*g + mem[100], then bumps both: a fresh instance always exits 12.
    static let counterGuest = #"""
        (module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "\02")
          (global $g (mut i32) (i32.const 1))
          (func (export "_start") (local $code i32)
            (local.set $code (i32.add (i32.mul (global.get $g) (i32.const 10)) (i32.load8_u (i32.const 100))))
            (global.set $g (i32.add (global.get $g) (i32.const 1)))
            (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
            (call $exit (local.get $code))))
        """#

    @Test func globalsAndMemoryAreResetBetweenRuns() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(bytes: Fixtures.wat(Self.counterGuest))
        #expect(module.reusableGlobalExports?.count == 1, "the internal mutable global is exported for reset")
        for _ in 0..<5 {
            let result = try await Fixtures.run(runtime, digest: module.digest)
            #expect(result.exit.code == 12)
        }
        #expect(runtime.statistics().warmInstancesIdle >= 1, "the instance went back to the pool")
    }

    @Test func reuseCanBeTurnedOff() async throws {
        let runtime = try Fixtures.makeRuntime { $0.warmInstancesPerModule = 0 }
        let module = try runtime.loadModule(bytes: Fixtures.wat(Self.counterGuest))
        for _ in 0..<2 { #expect(try await Fixtures.run(runtime, digest: module.digest).exit.code == 12) }
        #expect(runtime.statistics().warmInstancesIdle == 0)
    }

    @Test func cGuestExitingFromNestedFramesRunsAgainCleanly() async throws {
        // proc_exit leaves the C stack pointer global wherever it was; reuse must restore it.
        let runtime = try Fixtures.makeRuntime()
        var outputs = Set<String>()
        for _ in 0..<10 {
            let result = try await Fixtures.run(runtime, guest: "echo", args: ["a", "--exit", "3"], env: ["K": "V"])
            #expect(result.exit.code == 3)
            outputs.insert(result.stdout)
        }
        #expect(outputs.count == 1, "every run printed the same thing")
        #expect(outputs.first?.contains("argv[1]=a") == true)
    }

    @Test func eachRunGetsItsOwnArgsEnvironmentAndStdio() async throws {
        let runtime = try Fixtures.makeRuntime()
        for index in 0..<5 {
            let result = try await Fixtures.run(runtime, guest: "echo", args: ["run-\(index)"], env: ["N": "\(index)"])
            #expect(result.stdout.contains("argv[1]=run-\(index)"))
            #expect(result.stdout.contains("env N=\(index)"))
            #expect(!result.stdout.contains("run-\(index + 1)"))
        }
    }

    @Test func grownMemoryIsNeverReused() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"""
            (module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 1)
              (func (export "_start") (call $exit (memory.grow (i32.const 1)))))
            """#))
        for _ in 0..<3 {
            // memory.grow returns the old size in pages: 1 on a fresh instance, every time.
            #expect(try await Fixtures.run(runtime, digest: module.digest).exit.code == 1)
        }
    }

    @Test func memoryCapStillAppliesToAReusedInstance() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 4) (func (export "_start")))"#))
        #expect(try await Fixtures.run(runtime, digest: module.digest).exit.code == 0)
        let capped = try await Fixtures.run(runtime, digest: module.digest, limits: InstanceLimits(memoryBytes: 65536))
        #expect(capped.exit.reason == .failedToStart)
        #expect(capped.exit.memoryLimitHit)
    }

    @Test func modulesThatMutateTablesAreNotReused() throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"""
            (module (memory (export "memory") 1) (table 1 funcref)
              (func $f) (func (export "_start") (table.set (i32.const 0) (ref.func $f))) (elem declare func $f))
            """#))
        #expect(module.reusableGlobalExports == nil)
    }
}

extension InstanceReuseTests {
    @Test func evictingAModuleDropsItsWarmInstances() async throws {
        let runtime = try Fixtures.makeRuntime { $0.moduleCacheEntries = 1 }
        let first = try runtime.loadModule(bytes: Fixtures.wat(Self.counterGuest))
        #expect(try await Fixtures.run(runtime, digest: first.digest).exit.code == 12)
        #expect(runtime.statistics().warmInstancesIdle == 1)
        _ = try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 1) (func (export "_start")))"#))
        #expect(runtime.statistics().warmInstancesIdle == 0)
    }
}

extension InstanceReuseTests {
    /// Regression: a run used to unplug its WASI host after returning the instance to the pool,
    /// so a concurrent run that had just taken it saw "WASI call outside a run". The race window
    /// is tiny; `InstancePool.release` asserts the ordering, which is what makes this fail reliably.
    @Test func concurrentRunsShareThePoolSafely() async throws {
        let runtime = try Fixtures.makeRuntime { $0.warmInstancesPerModule = 2 }
        let module = try runtime.loadModule(path: Fixtures.guest("echo"))
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<6 {
                group.addTask {
                    var failed = 0
                    for run in 0..<40 {
                        let result = try await Fixtures.run(runtime, digest: module.digest, args: ["echo", "w\(worker)r\(run)"])
                        if result.exit.code != 0 || !result.stdout.contains("argv[1]=w\(worker)r\(run)") { failed += 1 }
                    }
                    return failed
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(failures == 0)
    }
}
