import Foundation
import Testing
@testable import WasmletRuntime

/// Hostile and broken guests end only their own instance, with a clear reason.
@Suite struct FaultTests {
    static func runWAT(_ runtime: WasmletRuntime, _ text: String, limits: InstanceLimits = InstanceLimits()) async throws -> ExitRecord {
        let module = try runtime.loadModule(bytes: Fixtures.wat(text))
        return try await Fixtures.run(runtime, digest: module.digest, limits: limits).exit
    }

    @Test func unreachableTraps() async throws {
        let runtime = try Fixtures.makeRuntime()
        let exit = try await Self.runWAT(runtime, #"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#)
        #expect(exit.reason == .trapped)
        #expect(exit.message == "unreachable")
        #expect(exit.code == 134)
    }

    @Test func outOfBoundsAccessTraps() async throws {
        let runtime = try Fixtures.makeRuntime()
        let exit = try await Self.runWAT(runtime, #"""
            (module (memory (export "memory") 1)
              (func (export "_start") (drop (i32.load (i32.const 70000)))))
            """#)
        #expect(exit.reason == .trapped)
        #expect(exit.message.contains("out of bounds memory access"))
    }

    @Test func divideByZeroTraps() async throws {
        let runtime = try Fixtures.makeRuntime()
        let exit = try await Self.runWAT(runtime, #"""
            (module (memory (export "memory") 1)
              (func (export "_start") (drop (i32.div_s (i32.const 1) (i32.const 0)))))
            """#)
        #expect(exit.reason == .trapped)
        #expect(exit.message.contains("divide by zero"))
    }

    @Test func hostileHostCallArgumentsGetErrnoNotACrash() async throws {
        // fd_write with iovecs far outside memory, poll_oneoff with wild pointers, and
        // fd_read into an out-of-range buffer: each must come back as an errno to the guest.
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"""
            (module
              (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 1)
              (func (export "_start") (local $errors i32)
                ;; iovec at 0 points at 0xFFFFFFF0 with length 0x1000
                (i32.store (i32.const 0) (i32.const 0xFFFFFFF0))
                (i32.store (i32.const 4) (i32.const 0x1000))
                (local.set $errors (i32.ne (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)) (i32.const 0)))
                (local.set $errors (i32.add (local.get $errors)
                  (i32.ne (call $fd_write (i32.const 1) (i32.const 0xFFFFFFF0) (i32.const 4) (i32.const 16)) (i32.const 0))))
                (local.set $errors (i32.add (local.get $errors)
                  (i32.ne (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)) (i32.const 0))))
                (local.set $errors (i32.add (local.get $errors)
                  (i32.ne (call $poll (i32.const 0xFFFFFF00) (i32.const 0xFFFFFF00) (i32.const 3) (i32.const 16)) (i32.const 0))))
                (call $exit (local.get $errors))))
            """#))
        let result = try await Fixtures.run(runtime, digest: module.digest)
        #expect(result.exit.reason == .exited)
        #expect(result.exit.code == 4, "each of the four hostile calls must fail with an errno")
        // And the process is fine: a normal guest still runs.
        let hello = try await Fixtures.run(runtime, guest: "hello")
        #expect(hello.stdout == "hello from wasmlet\n")
    }

    @Test func hostileGuestsEndOnlyThemselves() async throws {
        let runtime = try Fixtures.makeRuntime()
        let sleeper = try runtime.loadModule(path: Fixtures.guest("sleeper"))
        let neighbour = InstanceKey(namespace: "faults", id: "neighbour")
        try runtime.create(InstanceSpec(key: neighbour, moduleDigest: sleeper.digest, args: ["sleeper", "0.5"]))
        try runtime.start(neighbour)
        async let bomb = Fixtures.run(runtime, guest: "membomb", limits: InstanceLimits(memoryBytes: 8 << 20))
        async let recursion = Fixtures.run(runtime, guest: "recurse")
        async let loop = Fixtures.run(runtime, guest: "cpuhog", limits: InstanceLimits(fuel: 5_000_000))
        let results = try await [bomb, recursion, loop]
        #expect(results[0].exit.memoryLimitHit)
        #expect(results[1].exit.reason == .trapped)
        #expect(results[2].exit.reason == .outOfFuel)
        let exit = try await runtime.wait(neighbour)
        #expect(exit.reason == .exited)
        #expect(exit.code == 0)
    }

    @Test func procExitCodesAreFaithful() async throws {
        let runtime = try Fixtures.makeRuntime()
        for code in [0, 1, 42, 255] {
            let exit = try await Self.runWAT(runtime, #"""
                (module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                  (memory (export "memory") 1)
                  (func (export "_start") (call $exit (i32.const \#(code)))))
                """#)
            #expect(exit.code == Int32(code))
            #expect(exit.reason == .exited)
        }
    }
}
