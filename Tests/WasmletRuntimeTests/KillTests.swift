import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

@Suite struct KillTests {
    /// Starts a guest and waits until it is running (and, for a sleeper, has printed).
    static func startGuest(_ runtime: WasmletRuntime, _ name: String, args: [String] = [], stdio: StdioSpec = StdioSpec()) async throws -> InstanceKey {
        let module = try runtime.loadModule(path: Fixtures.guest(name))
        let key = InstanceKey(namespace: "kill", id: Fixtures.uniqueID())
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, args: [name] + args, stdio: stdio))
        try runtime.start(key)
        #expect(try await eventually(every: .milliseconds(5)) { try runtime.inspect(key).state == .running })
        try await Task.sleep(for: .milliseconds(50))  // let it reach its sleep / loop
        return key
    }

    @Test func killsASleepingGuest() async throws {
        let runtime = try Fixtures.makeRuntime()
        let key = try await Self.startGuest(runtime, "sleeper")
        try runtime.kill(key, signal: SIGTERM)
        let exit = try await runtime.wait(key)
        #expect(exit.message == "killed by signal 15", "the kill landed; the thread was not abandoned")
        #expect(exit.reason == .killed)
        #expect(exit.code == 143)
        #expect(exit.signal == SIGTERM)
    }

    @Test func killsAComputeLoopThatMakesNoHostCalls() async throws {
        let runtime = try Fixtures.makeRuntime()
        let key = try await Self.startGuest(runtime, "cpuhog")
        try runtime.kill(key)
        let exit = try await runtime.wait(key)
        #expect(exit.message == "killed by signal 9", "the kill landed; the thread was not abandoned")
        #expect(exit.reason == .killed)
        #expect(exit.code == 137)
        #expect(exit.fuelConsumed > 0, "fuel used before the kill is still reported")
    }

    @Test func killsAGuestBlockedReadingStdin() async throws {
        let directory = try Fixtures.temporaryDirectory()
        let fifo = directory.appendingPathComponent("stdin").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let runtime = try Fixtures.makeRuntime()
        let key = try await Self.startGuest(runtime, "cat", stdio: StdioSpec(stdin: fifo))
        // Hold a writer open so the guest blocks in fd_read rather than seeing EOF.
        let writer = open(fifo, O_WRONLY)
        defer { close(writer) }
        try await Task.sleep(for: .milliseconds(50))
        try runtime.kill(key)
        let exit = try await runtime.wait(key)
        #expect(exit.reason == .killed)
        #expect(exit.code == 137)
    }

    @Test func killBeforeStartNeverRuns() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        let key = InstanceKey(namespace: "kill", id: "unstarted")
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest))
        try runtime.kill(key, signal: SIGINT)
        let exit = try await runtime.wait(key)
        #expect(exit.reason == .killed)
        #expect(exit.code == 130)
        #expect(throws: RuntimeError.self) { try runtime.start(key) }
    }

    @Test func killOfExitedOrMissingIsAnError() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        let key = InstanceKey(namespace: "kill", id: "done")
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest))
        try runtime.start(key)
        _ = try await runtime.wait(key)
        let exited = #expect(throws: RuntimeError.self) { try runtime.kill(key) }
        #expect(exited?.kind == .failedPrecondition)
        let missing = #expect(throws: RuntimeError.self) { try runtime.kill(InstanceKey(namespace: "kill", id: "nope")) }
        #expect(missing?.kind == .notFound)
        let bad = #expect(throws: RuntimeError.self) { try runtime.kill(key, signal: 99) }
        #expect(bad?.kind == .invalidArgument)
    }

    @Test func repeatedKillsOfComputeGuestsAllLand() async throws {
        // Many kills in a row, beside a neighbour that must keep running correctly. It sleeps
        // for an hour (killed below), so only a fault, never a slow machine, ends it first.
        let runtime = try Fixtures.makeRuntime()
        let neighbour = try await Self.startGuest(runtime, "sleeper", args: ["3600"])
        for _ in 0..<25 {
            let key = try await Self.startGuest(runtime, "cpuhog")
            try runtime.kill(key)
            let exit = try await runtime.wait(key)
            #expect(exit.reason == .killed)
        }
        #expect(try runtime.inspect(neighbour).state == .running)
        let hello = try await Fixtures.run(runtime, guest: "hello")
        #expect(hello.stdout == "hello from wasmlet\n")
        try runtime.kill(neighbour)
        #expect(try await runtime.wait(neighbour).reason == .killed)
    }

    @Test func deleteRefusesRunningInstances() async throws {
        let runtime = try Fixtures.makeRuntime()
        let key = try await Self.startGuest(runtime, "sleeper")
        let error = #expect(throws: RuntimeError.self) { try runtime.delete(key) }
        #expect(error?.kind == .failedPrecondition)
        try runtime.kill(key)
        _ = try await runtime.wait(key)
        try runtime.delete(key)
        #expect(throws: RuntimeError.self) { try runtime.inspect(key) }
    }
}

/// Guests blocked in open(2) of a FIFO. Serialized: each test waits until some thread of the
/// process sits in openat(2), which the others' guests do for long.
@Suite(.serialized) struct FIFOOpenKillTests {
    /// A guest blocked opening a FIFO inside a preopen (the kernel's open waits for the other
    /// end) is killed at once, for reading (cat of the FIFO) and for writing (cat --write): the
    /// kill opens the other end, the open returns, the guest stops. The thread is not abandoned.
    @Test(arguments: [["cat", "/data/pipe"], ["cat", "--write", "/data/pipe", "text"]])
    func aKillEndsAGuestBlockedOpeningAFIFO(args: [String]) async throws {
        let directory = try Fixtures.temporaryDirectory()
        let fifo = directory.appendingPathComponent("pipe").path
        #expect(mkfifo(fifo, 0o600) == 0)
        // Escalation far beyond the test's own wait: an abandoned thread would show in the message.
        let runtime = try Fixtures.makeRuntime { $0.killEscalationTimeout = .seconds(60) }
        let module = try runtime.loadModule(path: Fixtures.guest("cat"))
        let key = InstanceKey(namespace: "kill", id: "open-\(args.count)")
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, args: args,
                                        preopens: [PreopenSpec(guestPath: "/data", hostPath: directory.path)]))
        try runtime.start(key)
        #expect(await eventually(timeout: .seconds(30), every: .milliseconds(5)) { KillTests.someThreadIsBlockedInOpenat(under: directory.resolvingSymlinksInPath().path) })
        try runtime.kill(key)
        let exit = try await runtime.wait(key)
        #expect(exit.reason == .killed)
        #expect(exit.code == 137)
        #expect(exit.message == "killed by signal 9", "the kill landed; the thread was not abandoned")
    }

    /// A host call outside our kill-aware wrappers cannot be interrupted. Here: open of a FIFO
    /// through a directory descriptor the guest opened itself (the kill-aware FIFO open knows
    /// the preopens' host paths only), which blocks in the kernel until a writer appears. The
    /// kill escalates: the instance is reported exited and its thread abandoned until the call
    /// returns.
    @Test func killEscalatesWhenAHostCallCannotBeInterrupted() async throws {
        let directory = try Fixtures.temporaryDirectory()
        let sub = directory.appendingPathComponent("sub").path
        #expect(mkdir(sub, 0o755) == 0)
        let fifo = sub + "/pipe"
        #expect(mkfifo(fifo, 0o600) == 0)
        let runtime = try Fixtures.makeRuntime { $0.killEscalationTimeout = .milliseconds(300) }
        // path_open(3, "sub", O_DIRECTORY, no rights of its own) into the fd at 64, then
        // path_open(that fd, "pipe") for reading; exit 10 or 11 if either fails.
        let module = try runtime.loadModule(bytes: Fixtures.wat(#"""
            (module
              (import "wasi_snapshot_preview1" "path_open"
                (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 1)
              (data (i32.const 16) "sub")
              (data (i32.const 32) "pipe")
              (func (export "_start")
                (if (call $open (i32.const 3) (i32.const 1) (i32.const 16) (i32.const 3) (i32.const 2)
                      (i64.const 0) (i64.const -1) (i32.const 0) (i32.const 64))
                  (then (call $exit (i32.const 10))))
                (if (call $open (i32.load (i32.const 64)) (i32.const 1) (i32.const 32) (i32.const 4) (i32.const 0)
                      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 68))
                  (then (call $exit (i32.const 11))))
                (call $exit (i32.const 0))))
            """#))
        let key = InstanceKey(namespace: "kill", id: "stuck-in-open")
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, args: ["nested-open"],
                                        preopens: [PreopenSpec(guestPath: "/data", hostPath: directory.path)]))
        try runtime.start(key)
        #expect(await eventually(timeout: .seconds(30), every: .milliseconds(5)) { KillTests.someThreadIsBlockedInOpenat(under: sub) })
        try runtime.kill(key)
        let exit = try await runtime.wait(key)
        #expect(exit.reason == .killed)
        #expect(exit.code == 137)
        #expect(exit.message.contains("abandoned"), "\(exit.message)")
        #expect(runtime.statistics().running == 0, "the admission slot is released")
        // Release the abandoned thread: a writer lets its open() return.
        let writer = open(fifo, O_WRONLY | O_NONBLOCK)
        if writer >= 0 { close(writer) }
        let hello = try await Fixtures.run(runtime, guest: "hello")
        #expect(hello.stdout == "hello from wasmlet\n")
    }

}

extension KillTests {
    /// Whether a thread of this process is inside openat(2) relative to `directory`, from
    /// /proc/self/task/*/syscall: the call's first argument is the directory descriptor, which
    /// /proc/self/fd names. So another test's open, elsewhere, does not count.
    static func someThreadIsBlockedInOpenat(under directory: String) -> Bool {
        #if arch(x86_64)
            let openat = "257"
        #elseif arch(arm64)
            let openat = "56"
        #endif
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.contains { task in
            guard let line = try? String(contentsOfFile: "/proc/self/task/\(task)/syscall", encoding: .utf8) else { return false }
            let fields = line.split(separator: " ")
            guard fields.count > 1, fields[0] == openat, fields[1].hasPrefix("0x"), let fd = Int32(fields[1].dropFirst(2), radix: 16)
            else { return false }
            return (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) == directory
        }
    }
}
