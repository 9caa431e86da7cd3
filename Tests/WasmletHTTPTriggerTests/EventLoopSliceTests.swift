import Testing
import WasmletHTTPTrigger
import WasmletRuntime
import WasmletTestSupport

/// A request first runs on the event loop that read it, for a slice of fuel, and moves to a guest
/// thread of its own when it needs more, or would wait (`ServiceRuns.run`). What a thrown-away
/// slice did must never show: not in the answer, not in the log.
@Suite(.serialized) struct EventLoopSliceTests {
    @Test func shortRequestsAreAnsweredOnTheirEventLoopEachByAFreshInstance() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (key, port) = try harness.serve()
        for _ in 0..<6 {
            let answer = try await curl(port, "/env")
            #expect(answer.status == 200)
            #expect(answer.body.contains("counter=1\n"), "\(answer.body)")
        }
        // The first request finds no warm instance, so it starts on a guest thread (and does not
        // count as outgrown); each one after it reuses the instance on the loop.
        let counts = try #require(harness.runtime.requestSliceCounts(of: key))
        #expect(counts.kept == 5)
        #expect(counts.outgrown == 0)
    }

    @Test func workPastTheSliceRunsAgainOnAGuestThreadAndShowsOnce() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (key, port) = try harness.serve()
        _ = try await curl(port, "/status")  // leaves a warm instance
        let spin = try await curl(port, "/spin")
        #expect(spin.status == 200)
        #expect(spin.body == "spun 2000000\n")
        // The slice wrote the line too, before it was thrown away: it was held back, not logged.
        #expect(harness.log.messages.filter { $0 == "probe spins" }.count == 1)
        let counts = try #require(harness.runtime.requestSliceCounts(of: key))
        #expect(counts.outgrown == 1)
        // After an outgrown slice the next requests skip the slice, and are still answered.
        let kept = counts.kept
        #expect(try await curl(port, "/status").status == 404)
        #expect(harness.runtime.requestSliceCounts(of: key)?.kept == kept)
    }

    /// 100 KiB of stderr is more than a slice may hold back (and more work than it has fuel for):
    /// the run moves to a guest thread, and every line is logged once, in order.
    @Test func stderrPastWhatASliceHoldsMovesTheRun() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (key, port) = try harness.serve()
        _ = try await curl(port, "/status")
        #expect(try await curl(port, "/flood").body == "flooded\n")
        let floods = harness.log.messages.filter { $0.hasPrefix("flood ") }.map { String($0.prefix(9)) }
        #expect(floods == (0..<100).map { "flood " + String(repeating: "0", count: $0 < 10 ? 2 : 1) + String($0) })
        #expect(harness.runtime.requestSliceCounts(of: key)?.outgrown == 1)
    }

    @Test func aRequestThatWaitsLeavesTheEventLoop() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (key, port) = try harness.serve()
        _ = try await curl(port, "/status")
        let slept = try await curl(port, "/sleep")
        #expect(slept.body == "slept\n")
        #expect(harness.runtime.requestSliceCounts(of: key)?.outgrown == 1)
    }

    /// A fuel budget below the slice is the guest's own limit: out of fuel is its answer (500),
    /// not a reason to run it again.
    @Test func aBudgetBelowTheSliceIsTheGuestsOwnLimit() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (key, port) = try harness.serve(limits: InstanceLimits(fuel: 50_000))
        _ = try await curl(port, "/status")
        let answer = try await curl(port, "/loop")
        #expect(answer.status == 500)
        #expect(answer.body.contains("fuel"), "\(answer.body)")
        #expect(harness.runtime.requestSliceCounts(of: key)?.outgrown == 0)
    }

    @Test func withSlicesOffEveryRequestRunsOnAGuestThread() async throws {
        var configuration = RuntimeConfiguration()
        configuration.requestSliceFuel = nil
        let harness = try ServingHarness(configuration: configuration)
        defer { harness.shutdown() }
        let (key, port) = try harness.serve()
        for _ in 0..<3 { #expect(try await curl(port, "/env").body.contains("counter=1\n")) }
        let counts = try #require(harness.runtime.requestSliceCounts(of: key))
        #expect(counts.kept == 0 && counts.outgrown == 0)
    }

    /// Pipelined in one write: requests answered on the loop while the read goes on (their
    /// answers are written at once, inside that read) and requests answered later from guest
    /// threads, in both orders: slices, then a run that waits, then the requests that skip the
    /// slice after it, then slices again. Every answer comes whole and in the order asked.
    /// (The slices are unknown paths, whose answer names the path in one short printf: /env
    /// with a query string needs more fuel than a slice has.)
    @Test func pipelinedAnswersFromTheLoopAndFromGuestThreadsKeepTheirOrder() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (key, port) = try harness.serve()
        _ = try await curl(port, "/status")  // leaves a warm instance
        let skipped = Array(repeating: "/crlf", count: ServiceRuns.slicesSkippedAfterOutgrowing)
        let paths = ["/p1", "/p2", "/sleep"] + skipped + ["/p3", "/p4"]
        let request = paths.map { "GET \($0) HTTP/1.1\r\nHost: h\r\n\r\n" }.joined() + "GET /p5 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        let answer = try await offThePool { try loopbackExchange(port: port, request) }
        let statuses = answer.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
        let expected = ["404", "404", "200"] + skipped.map { _ in "200" } + ["404", "404", "404"]
        #expect(statuses == expected, "\(answer.prefix(2000))")
        let marks = ["unknown probe /p1\n", "unknown probe /p2\n", "slept\n", "unknown probe /p3\n", "unknown probe /p4\n", "unknown probe /p5\n"]
        let places = marks.compactMap { answer.range(of: $0)?.lowerBound }
        #expect(places.count == marks.count && places == places.sorted(), "\(answer.prefix(2000))")
        #expect(answer.components(separatedBy: "crlf body\n").count - 1 == skipped.count)
        // p1 and p2 on the loop; /sleep outgrows its slice; the 64 after it skip the slice
        // (guest threads); p3, p4 and p5 on the loop again.
        let counts = try #require(harness.runtime.requestSliceCounts(of: key))
        #expect(counts.kept == 5 && counts.outgrown == 1, "\(counts)")
        // The node-wide totals (the metrics' wasmlet_http_request_slices_total) count the same,
        // the /status before included.
        let statistics = harness.runtime.statistics()
        #expect(statistics.requestSlicesKept == 5 && statistics.requestSlicesOutgrown == 1)
    }

    /// A CGI's stdio are pipes: a request guest's libc must not take them for terminals (stdout
    /// would then be line-buffered).
    @Test func aRequestsStdioIsNotATerminal() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (_, port) = try harness.serve()
        #expect(try await curl(port, "/tty").body == "tty 0 0 0\n")
        #expect(try await curl(port, "/tty").body == "tty 0 0 0\n")
    }
}
