import Foundation
import Glibc
import Synchronization
import Testing
import WasmletTestSupport
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
        #expect(await eventually(timeout: .seconds(20), every: .milliseconds(5)) { runtime.statistics().running == 300 })
        let hello = try await Fixtures.run(runtime, guest: "hello")
        #expect(hello.stdout == "hello from wasmlet\n")
        for key in keys { try runtime.kill(key) }
        for key in keys { #expect(try await runtime.wait(key).reason == .killed) }
        #expect(runtime.statistics().running == 0)
    }

    /// What the scheduler promises a short guest started beside CPU hogs, observed through
    /// thread priorities rather than wall time: each hog, once it has run past
    /// `demoteLongRunningAfter`, runs at nice `longRunningNice`, while a guest that starts then
    /// enters its entry point at the normal (baseline) priority. That difference is what lets the
    /// short guest finish quickly on a busy node: CFS gives a nice-0 thread about nine times the
    /// CPU of a nice-10 one. It fails if demotion stops happening, or if a new guest inherits a
    /// demoted priority (say, from a reused thread that was not reset).
    @Test func shortGuestFinishesBesideCPUHogs() async throws {
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        let baseline = getpriority(which, 0)
        let demoted = min(baseline + 10, 19)
        try #require(demoted > baseline, "the tests run at nice \(baseline): there is no lower priority to demote to")
        // Each guest's thread id and the priority it entered `_start` with.
        let entered = Mutex<[InstanceKey: (thread: pid_t, nice: Int32)]>([:])
        var configuration = RuntimeConfiguration()
        configuration.killEscalationTimeout = .seconds(120)
        configuration.longRunningNice = demoted
        let runtime = try WasmletRuntime(
            configuration: configuration,
            hooks: RuntimeHooks(guestEntered: { entry in
                let thread = currentThreadID()
                let nice = getpriority(which, 0)
                entered.withLock { $0[entry.key] = (thread, nice) }
            }))
        let hog = try runtime.loadModule(path: Fixtures.guest("cpuhog"))
        var hogs: [InstanceKey] = []
        // More hogs than the machine has cores (two here), so they compete with the short guest.
        for index in 0..<4 {
            let key = InstanceKey(namespace: "sched", id: "hog-\(index)")
            try runtime.create(InstanceSpec(key: key, moduleDigest: hog.digest, args: ["cpuhog"]))
            try runtime.start(key)
            hogs.append(key)
        }
        func hogThreadsDemoted() -> Bool {
            let threads = entered.withLock { table in hogs.compactMap { table[$0]?.thread } }
            return threads.count == hogs.count && threads.allSatisfy { getpriority(which, id_t($0)) == demoted }
        }
        #expect(await eventually(every: .milliseconds(5)) { hogThreadsDemoted() }, "the hogs were not moved to nice \(demoted)")
        #expect(entered.withLock { table in hogs.allSatisfy { table[$0]?.nice == baseline } }, "a hog did not start at nice \(baseline)")

        let result = try await Fixtures.run(runtime, guest: "hello")
        #expect(result.exit.code == 0)
        #expect(result.stdout == "hello from wasmlet\n")
        let short = try #require(entered.withLock { table in table.first { $0.key.namespace == "test" }?.value })
        #expect(short.nice == baseline, "the short guest ran at nice \(short.nice), the hogs at \(demoted)")
        // The hogs ran (demoted) the whole time the short guest did.
        #expect(runtime.statistics().running == hogs.count)
        #expect(hogThreadsDemoted())

        for key in hogs { try runtime.kill(key) }
        for key in hogs { #expect(try await runtime.wait(key).reason == .killed) }
    }

    /// Priority follows what a guest does, not how long it has run: a guest that waits in a host
    /// call (a server between requests; here a sleeper) keeps its priority, or gets it back
    /// after a busy start; a guest that computes is lowered, then gets its priority back once it
    /// waits. The computing guest spins on non-blocking calls (path_filestat_get of "go" in its
    /// preopen) until the test, having seen it lowered, creates that file; then it sleeps 60 s.
    /// Fails if waiting guests stay lowered, or computing ones are not lowered, or never restored.
    @Test func priorityFollowsComputingNotAge() async throws {
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        let baseline = getpriority(which, 0)
        let demoted = min(baseline + 10, 19)
        try #require(demoted > baseline, "the tests run at nice \(baseline): there is no lower priority to demote to")
        let threads = Mutex<[InstanceKey: pid_t]>([:])
        var configuration = RuntimeConfiguration()
        configuration.longRunningNice = demoted
        let runtime = try WasmletRuntime(
            configuration: configuration,
            hooks: RuntimeHooks(guestEntered: { entry in
                let thread = currentThreadID()
                threads.withLock { $0[entry.key] = thread }
            }))
        let directory = try Fixtures.temporaryDirectory()
        let sleeper = try runtime.loadModule(path: Fixtures.guest("sleeper"))
        let spinThenSleep = try runtime.loadModule(bytes: Fixtures.wat(#"""
            (module
              (import "wasi_snapshot_preview1" "path_filestat_get"
                (func $stat (param i32 i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 200) "go")
              (func (export "_start")
                ;; until "go" exists in the preopen (fd 3): 0 is success
                (block $done (loop $spin
                  (br_if $done (i32.eqz (call $stat (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 2) (i32.const 256))))
                  (br $spin)))
                ;; one clock subscription at 64: monotonic, relative, 60 s
                (i32.store8 (i32.const 72) (i32.const 0))
                (i32.store (i32.const 80) (i32.const 1))
                (i64.store (i32.const 88) (i64.const 60000000000))
                (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 160)))))
            """#))
        let waiter = InstanceKey(namespace: "sched", id: "waiter")
        let worker = InstanceKey(namespace: "sched", id: "worker")
        try runtime.create(InstanceSpec(key: waiter, moduleDigest: sleeper.digest, args: ["sleeper", "600"]))
        try runtime.create(InstanceSpec(
            key: worker, moduleDigest: spinThenSleep.digest, preopens: [PreopenSpec(guestPath: "/", hostPath: directory.path)]))
        try runtime.start(waiter)
        try runtime.start(worker)
        func nice(_ key: InstanceKey) -> Int32? {
            guard let thread = threads.withLock({ $0[key] }) else { return nil }
            return getpriority(which, id_t(thread))
        }
        #expect(await eventually(every: .milliseconds(5)) { nice(worker) == demoted }, "the computing guest was not lowered")
        #expect(FileManager.default.createFile(atPath: directory.appendingPathComponent("go").path, contents: nil))
        #expect(await eventually(every: .milliseconds(5)) { nice(worker) == baseline }, "the guest was not given its priority back once it waited")
        #expect(await eventually(every: .milliseconds(5)) { nice(waiter) == baseline }, "a guest that waits stays lowered (nice \(nice(waiter).map(String.init) ?? "?"))")
        for key in [waiter, worker] { try runtime.kill(key) }
        for key in [waiter, worker] { #expect(try await runtime.wait(key).reason == .killed) }
    }
}

/// The calling thread's kernel id, from /proc/thread-self ("<pid>/task/<tid>"): Swift's Glibc
/// does not export gettid().
private func currentThreadID() -> pid_t {
    var buffer = [CChar](repeating: 0, count: 64)
    let count = readlink("/proc/thread-self", &buffer, buffer.count - 1)
    guard count > 0 else { return -1 }
    let link = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return link.split(separator: "/").last.flatMap { pid_t($0) } ?? -1
}
