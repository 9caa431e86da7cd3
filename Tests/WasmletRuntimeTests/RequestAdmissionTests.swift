import Dispatch
import Synchronization
import Testing

@testable import WasmletRuntime

/// The lock-free parts of a request's run: the instance count and the shared deadline timer.
@Suite struct RequestAdmissionTests {
    /// Threads racing to admit never hold more than the limit at once, every refusal names the
    /// limit, and the count is back to zero after.
    @Test func racingAdmissionsNeverPassTheLimit() {
        let admission = InstanceAdmission(maxInstances: 8, ceiling: nil)
        let held = Atomic<Int>(0)
        let peak = Atomic<Int>(0)
        let refusals = Atomic<Int>(0)
        let badMessages = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            for _ in 0..<2_000 {
                do {
                    try admission.admit(request: true)
                    let now = held.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
                    peak.max(now, ordering: .relaxed)
                    held.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                    admission.release(request: true)
                } catch {
                    refusals.wrappingAdd(1, ordering: .relaxed)
                    if (error as? RuntimeError)?.message != "instance limit reached: 8 live instances" { badMessages.wrappingAdd(1, ordering: .relaxed) }
                }
            }
        }
        #expect(peak.load(ordering: .relaxed) <= 8)
        #expect(badMessages.load(ordering: .relaxed) == 0)
        #expect(admission.requestsRunning == 0)
        // All slots are free again: exactly eight fit, the ninth is refused.
        for _ in 0..<8 { #expect(throws: Never.self) { try admission.admit() } }
        #expect(throws: RuntimeError.self) { try admission.admit() }
    }

    @Test func theCeilingIsNamedWhenItIsBelowTheConfiguredLimit() {
        let admission = InstanceAdmission(maxInstances: 100, ceiling: InstanceCeiling(instances: 1, limit: "vm.max_map_count=10"))
        #expect(throws: Never.self) { try admission.admit() }
        do {
            try admission.admit()
            Issue.record("the second instance was admitted past a ceiling of 1")
        } catch {
            // admit() throws RuntimeError only (typed throws).
            #expect(error.message.contains("vm.max_map_count=10"), "\(error.message)")
        }
    }

    /// Deadlines fire in time order, a removed one never fires, and one added earlier than the
    /// one the timer is set for still fires first.
    @Test func deadlinesFireInOrderAndRemovedOnesDoNot() {
        let deadlines = RequestDeadlines()
        let fired = Mutex<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        func add(_ n: Int, _ ms: UInt64) -> UInt64 {
            deadlines.add(milliseconds: ms) {
                fired.withLock { $0.append(n) }
                done.signal()
            }
        }
        _ = add(3, 300)
        let removed = add(9, 100)
        _ = add(2, 150)
        _ = add(1, 50)
        deadlines.remove(removed)
        #expect(deadlines.count == 3)
        for _ in 0..<3 { #expect(done.wait(timeout: .now() + 60) == .success) }
        #expect(fired.withLock { $0 } == [1, 2, 3])
        #expect(deadlines.count == 0)
        // Many entries that leave before their time: none fires, and none is left behind.
        let ids = (0..<1_000).map { _ in deadlines.add(milliseconds: 60_000) { fired.withLock { $0.append(-1) } } }
        for id in ids.shuffled() { deadlines.remove(id) }
        #expect(deadlines.count == 0)
        _ = add(4, 1)
        #expect(done.wait(timeout: .now() + 60) == .success)
        #expect(fired.withLock { $0 } == [1, 2, 3, 4])
    }
}
