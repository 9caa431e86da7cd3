import Foundation
import Glibc
import Synchronization
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

/// What the runtime reports for metrics: instantiation time from the guest thread, guests
/// blocked in host calls, linear memory in use, and per-instance usage.
@Suite struct ObservabilityTests {
    final class Entries: Sendable {
        let list = Mutex<[GuestEntry]>([])
        func add(_ entry: GuestEntry) { list.withLock { $0.append(entry) } }
        var all: [GuestEntry] { list.withLock { $0 } }
    }

    @Test func guestEntryReportsInstantiationTimeFromTheGuestThread() async throws {
        let entries = Entries()
        var configuration = RuntimeConfiguration()
        configuration.killEscalationTimeout = .seconds(120)
        let runtime = try WasmletRuntime(configuration: configuration, hooks: RuntimeHooks(guestEntered: { entries.add($0) }))
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        var keys: [InstanceKey] = []
        for _ in 0..<3 {
            let key = InstanceKey(namespace: "obs", id: Fixtures.uniqueID())
            keys.append(key)
            let exit = try await runtime.run(InstanceSpec(key: key, moduleDigest: module.digest, args: ["hello"]))
            #expect(exit.reason == .exited)
        }
        let seen = entries.all
        #expect(seen.map(\.key) == keys, "one entry per run, in order")
        for entry in seen {
            #expect(entry.instantiateDuration > .zero)
            #expect(entry.instantiateDuration < .seconds(10))
        }
        #expect(seen.first?.reusedWarmInstance == false, "the first run instantiates")
        #expect(seen.dropFirst().allSatisfy { $0.reusedWarmInstance }, "later runs of hello reuse its warm instance")
    }

    @Test func aGuestWithAListenerIsNotKeptForReuse() async throws {
        let entries = Entries()
        let runtime = try WasmletRuntime(hooks: RuntimeHooks(guestEntered: { entries.add($0) }))
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        for _ in 0..<2 {
            let exit = try await runtime.run(InstanceSpec(
                key: InstanceKey(namespace: "obs", id: Fixtures.uniqueID()), moduleDigest: module.digest, args: ["hello"],
                listeners: [ListenerSpec(address: "127.0.0.1", port: 0)]))
            #expect(exit.reason == .exited && exit.code == 0, "\(exit)")
        }
        #expect(entries.all.map(\.reusedWarmInstance) == [false, false], "a server's instance holds no snapshot, so it is not pooled")
        // The same module without a listener is pooled after its first clean exit.
        for _ in 0..<2 {
            _ = try await runtime.run(InstanceSpec(key: InstanceKey(namespace: "obs", id: Fixtures.uniqueID()), moduleDigest: module.digest, args: ["hello"]))
        }
        #expect(entries.all.map(\.reusedWarmInstance) == [false, false, false, true])
    }

    @Test func aGuestThatNeverReachesItsEntryPointReportsNothing() async throws {
        let entries = Entries()
        let runtime = try WasmletRuntime(hooks: RuntimeHooks(guestEntered: { entries.add($0) }))
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        let key = InstanceKey(namespace: "obs", id: Fixtures.uniqueID())
        let exit = try await runtime.run(
            InstanceSpec(key: key, moduleDigest: module.digest, limits: InstanceLimits(memoryBytes: 1024)))
        #expect(exit.reason == .failedToStart)
        #expect(entries.all.isEmpty)
    }

    @Test func sleepingGuestsCountAsBlockedAndTheirMemoryAsInUse() async throws {
        let runtime = try Fixtures.makeRuntime()
        #expect(runtime.statistics().guestsBlockedInHostCalls == 0)
        #expect(runtime.statistics().linearMemoryBytes == 0)
        let first = try await KillTests.startGuest(runtime, "sleeper")
        let second = try await KillTests.startGuest(runtime, "sleeper")
        #expect(await eventually(every: .milliseconds(5)) { runtime.statistics().guestsBlockedInHostCalls == 2 })
        let memory = try runtime.usage(first).memoryBytes + runtime.usage(second).memoryBytes
        #expect(memory > 0)
        #expect(runtime.statistics().linearMemoryBytes == memory)

        // A compute loop runs without blocking.
        let hog = try await KillTests.startGuest(runtime, "cpuhog")
        // Its memory counts once it is instantiated, however slow the machine; it never blocks.
        #expect(await eventually(every: .milliseconds(5)) { runtime.statistics().linearMemoryBytes > memory })
        #expect(runtime.statistics().guestsBlockedInHostCalls == 2)

        for key in [first, second, hog] {
            try runtime.kill(key)
            _ = try await runtime.wait(key)
        }
        #expect(runtime.statistics().guestsBlockedInHostCalls == 0)
        #expect(runtime.statistics().linearMemoryBytes == 0, "exited guests hold no memory")
    }

    @Test func aGuestBlockedReadingAPipeCountsAsBlocked() async throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let fifo = directory.appendingPathComponent("stdin").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let runtime = try Fixtures.makeRuntime()
        let key = try await KillTests.startGuest(runtime, "cat", stdio: StdioSpec(stdin: fifo))
        let writer = open(fifo, O_WRONLY)
        defer { close(writer) }
        #expect(await eventually(every: .milliseconds(5)) { runtime.statistics().guestsBlockedInHostCalls == 1 })
        try runtime.kill(key)
        _ = try await runtime.wait(key)
        #expect(runtime.statistics().guestsBlockedInHostCalls == 0)
    }

    @Test func usageReportKeepsLiveInstancesOldestFirstUpToTheLimit() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        func create(_ id: String) throws -> InstanceKey {
            let key = InstanceKey(namespace: "obs", id: id)
            try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, args: ["hello"]))
            return key
        }
        // "done" is the oldest but has exited: live instances come first.
        let done = try create("done")
        try runtime.start(done)
        _ = try await runtime.wait(done)
        let a = try create("a")
        let b = try create("b")
        let c = try create("c")

        let two = runtime.usageReport(limit: 2)
        #expect(two.instances.map(\.key) == [a, b])
        #expect(two.omitted == 2)
        let all = runtime.usageReport(limit: 10)
        #expect(Set(all.instances.map(\.key)) == [done, a, b, c])
        #expect(all.omitted == 0)
        let exited = try #require(all.instances.first { $0.key == done })
        #expect(exited.state == .exited)
        let record = try #require(try runtime.inspect(done).exit)
        #expect(exited.usage.fuelConsumed == record.fuelConsumed)
        #expect(exited.usage.fuelConsumed > 0)
        #expect(exited.usage.cpuTimeNanoseconds == record.cpuTimeNanoseconds)
        #expect(runtime.usageReport(limit: 0).omitted == 4)

        try runtime.delete(a)
        #expect(runtime.usageReport(limit: 2).instances.map(\.key) == [b, c], "a deleted instance leaves the report")
    }

    @Test func aRunningGuestReportsFuelAndCPUTimeSoFar() async throws {
        let runtime = try Fixtures.makeRuntime()
        let key = try await KillTests.startGuest(runtime, "cpuhog")
        // Wait for progress rather than for a fixed time: on a loaded machine the guest (demoted
        // to nice 10 after 50 ms) may not run at all for a while.
        #expect(await eventually(every: .milliseconds(5)) { ((try? runtime.usage(key))?.fuelConsumed ?? 0) > 0 })
        let early = try runtime.usage(key)
        #expect(await eventually(every: .milliseconds(5)) { ((try? runtime.usage(key))?.fuelConsumed ?? 0) > early.fuelConsumed },
                "fuel grows while the guest computes")
        let later = try runtime.usage(key)
        #expect(later.cpuTimeNanoseconds > 0)
        let entry = try #require(runtime.usageReport(limit: 5).instances.first { $0.key == key })
        #expect(entry.state == .running)
        #expect(entry.usage.fuelConsumed >= later.fuelConsumed)
        try runtime.kill(key)
        let exit = try await runtime.wait(key)
        #expect(exit.fuelConsumed >= entry.usage.fuelConsumed)
    }
}
