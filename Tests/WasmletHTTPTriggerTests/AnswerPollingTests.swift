import NIOCore
import Testing
import WasmletHTTPTrigger
import WasmletTestSupport

/// After an answer, a loop polls its sockets for a window before it sleeps (`AnswerPolling`):
/// a request that comes within it is read without a wake-up, and the window ends by itself.
@Suite(.serialized) struct AnswerPollingTests {
    @Test func aRequestRightAfterAnAnswerIsReadWhileTheLoopPolls() async throws {
        // A window as long as a hang guard: curl's second request comes inside it however
        // loaded the machine is. The harness's shutdown ends it (the loop's pipe closes).
        let harness = try ServingHarness(pollWindow: .seconds(60))
        defer { harness.shutdown() }
        let (_, port) = try harness.serve("wagi_hello")
        try await twoRequestsOnOneConnection(port)
        #expect(harness.host.pollingTotals.caught >= 1, "\(harness.host.pollingTotals)")
    }

    @Test func theWindowEndsByItselfAndTheLoopSleeps() async throws {
        let window = TimeAmount.milliseconds(5)
        let harness = try ServingHarness(pollWindow: window)
        defer { harness.shutdown() }
        let (_, port) = try harness.serve("wagi_hello")
        #expect(try await curl(port, "/").status == 200)
        // Nothing more comes: the window ends, and its time is counted then. A loop that
        // polled on would never count it.
        #expect(await eventually { harness.host.pollingTotals.seconds > 0 }, "\(harness.host.pollingTotals)")
        let totals = harness.host.pollingTotals
        #expect(totals.seconds >= 0.005, "a window lasts at least its length after the answer: \(totals)")
        // The next request, on a new connection after the window ended, finds its loop asleep.
        #expect(try await curl(port, "/").status == 200)
        #expect(harness.host.pollingTotals.caught == 0)
    }

    @Test func aZeroWindowNeverPolls() async throws {
        let harness = try ServingHarness(pollWindow: .zero)
        defer { harness.shutdown() }
        let (_, port) = try harness.serve("wagi_hello")
        try await twoRequestsOnOneConnection(port)
        #expect(harness.host.pollingTotals == AnswerPolling.Totals(caught: 0, seconds: 0))
    }
}

/// Two GETs of the hello service through one curl, which sends the second on the same
/// connection once the first is answered.
private func twoRequestsOnOneConnection(_ port: UInt16) async throws {
    let (termination, output) = try await ChildProcess.run(
        "/usr/bin/curl", ["-sS", "--max-time", "60", "http://127.0.0.1:\(port)/", "http://127.0.0.1:\(port)/"])
    #expect(termination == .exited(0))
    #expect(output == "hello from wasmlet\nhello from wasmlet\n")
}
