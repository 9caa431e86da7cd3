import Dispatch
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import WasmletHTTPTrigger

@Suite struct RequestGateTests {
    static let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func grantsUpToTheLimitThenQueuesThenRefuses() {
        let gate = RequestGate(maxConcurrency: 2, queueLength: 1)
        let granted = Mutex<[Int]>([])
        func enter(_ n: Int) -> RequestGate.Entry { gate.enter(grant: { granted.withLock { $0.append(n) } }, expire: {}, within: .seconds(60), on: Self.loop) }
        guard case .granted = enter(1), case .granted = enter(2) else { Issue.record("first two not granted"); return }
        guard case .queued = enter(3) else { Issue.record("third not queued"); return }
        guard case .full = enter(4) else { Issue.record("fourth not refused"); return }
        #expect(gate.counts == (2, 1))
        gate.leave()
        #expect(granted.withLock { $0 } == [3])
        #expect(gate.counts == (2, 0))
        gate.leave()
        gate.leave()
        #expect(gate.counts == (0, 0))
    }

    @Test func aCancelledWaiterIsSkippedAndACancelAfterTheGrantFails() {
        let gate = RequestGate(maxConcurrency: 1, queueLength: 4)
        let granted = Mutex<[Int]>([])
        _ = gate.enter(grant: {}, expire: {}, within: .seconds(60), on: Self.loop)
        guard case .queued(let first) = gate.enter(grant: { granted.withLock { $0.append(1) } }, expire: {}, within: .seconds(60), on: Self.loop),
            case .queued(let second) = gate.enter(grant: { granted.withLock { $0.append(2) } }, expire: {}, within: .seconds(60), on: Self.loop)
        else { Issue.record("not queued"); return }
        #expect(gate.cancel(first))
        gate.leave()
        #expect(granted.withLock { $0 } == [2])
        #expect(!gate.cancel(second))
    }

    @Test func waitersAreServedInArrivalOrderAcrossManyCycles() {
        let gate = RequestGate(maxConcurrency: 1, queueLength: 1000)
        let order = Mutex<[Int]>([])
        _ = gate.enter(grant: {}, expire: {}, within: .seconds(60), on: Self.loop)
        for n in 0..<500 { _ = gate.enter(grant: { order.withLock { $0.append(n) } }, expire: {}, within: .seconds(60), on: Self.loop) }
        for _ in 0..<500 { gate.leave() }
        #expect(order.withLock { $0 } == Array(0..<500))
        gate.leave()
        #expect(gate.counts == (0, 0))
    }

    /// One expiry task per gate serves every waiter: each expires in queue order once its own
    /// queue time is over, a waiter that came later is timed again, and a granted one never
    /// expires.
    @Test func waitersExpireInOrderOnTheGatesOneTimer() {
        let gate = RequestGate(maxConcurrency: 1, queueLength: 8)
        let expired = Mutex<[Int]>([])
        let granted = Mutex<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        func enter(_ n: Int, within time: TimeAmount) -> RequestGate.Entry {
            gate.enter(
                grant: { granted.withLock { $0.append(n) } },
                expire: {
                    expired.withLock { $0.append(n) }
                    done.signal()
                }, within: time, on: Self.loop)
        }
        guard case .granted = enter(0, within: .seconds(60)) else { Issue.record("first not granted"); return }
        for n in 1...3 {
            guard case .queued = enter(n, within: .milliseconds(20)) else { Issue.record("\(n) not queued"); return }
        }
        for _ in 1...3 { done.wait() }
        #expect(expired.withLock { $0 } == [1, 2, 3])
        #expect(gate.counts == (1, 0))
        // The task went idle with the queue; a new waiter schedules it again.
        guard case .queued = enter(4, within: .milliseconds(20)) else { Issue.record("4 not queued"); return }
        done.wait()
        #expect(expired.withLock { $0 } == [1, 2, 3, 4])
        // A waiter granted before its time is up is not expired.
        guard case .queued = enter(5, within: .milliseconds(50)) else { Issue.record("5 not queued"); return }
        gate.leave()
        #expect(granted.withLock { $0 } == [5])
        #expect(gate.counts == (1, 0))
        gate.leave()
        #expect(gate.counts == (0, 0))
        #expect(expired.withLock { $0 } == [1, 2, 3, 4])
    }
}
