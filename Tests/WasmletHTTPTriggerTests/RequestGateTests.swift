import Synchronization
import Testing

@testable import WasmletHTTPTrigger

@Suite struct RequestGateTests {
    @Test func grantsUpToTheLimitThenQueuesThenRefuses() {
        let gate = RequestGate(maxConcurrency: 2, queueLength: 1)
        let granted = Mutex<[Int]>([])
        func enter(_ n: Int) -> RequestGate.Entry { gate.enter { granted.withLock { $0.append(n) } } }
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
        _ = gate.enter(grant: {})
        guard case .queued(let first) = gate.enter(grant: { granted.withLock { $0.append(1) } }),
            case .queued(let second) = gate.enter(grant: { granted.withLock { $0.append(2) } })
        else { Issue.record("not queued"); return }
        #expect(gate.cancel(first))
        gate.leave()
        #expect(granted.withLock { $0 } == [2])
        #expect(!gate.cancel(second))
    }

    @Test func waitersAreServedInArrivalOrderAcrossManyCycles() {
        let gate = RequestGate(maxConcurrency: 1, queueLength: 1000)
        let order = Mutex<[Int]>([])
        _ = gate.enter(grant: {})
        for n in 0..<500 { _ = gate.enter { order.withLock { $0.append(n) } } }
        for _ in 0..<500 { gate.leave() }
        #expect(order.withLock { $0 } == Array(0..<500))
        gate.leave()
        #expect(gate.counts == (0, 0))
    }
}
