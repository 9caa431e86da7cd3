import Testing
import WasmletConventions

/// One duration syntax for every program (`DurationSyntax`): Go's, and a number needs its unit.
@Suite struct DurationSyntaxTests {
    @Test(arguments: [
        ("300ms", 300), ("300s", 300_000), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000),
        ("1m30s", 90_000), ("1h2m3s", 3_723_000), ("1.5s", 1_500), (".5s", 500), ("2.s", 2_000),
        ("1500000us", 1_500), ("1500000µs", 1_500), ("1000000000ns", 1_000), ("0", 0), ("0s", 0),
        ("0ms", 0), (" 250ms ", 250), ("1h0.5m", 3_630_000), ("2562047h", 9_223_369_200_000),
    ] as [(String, UInt64)])
    func milliseconds(text: String, expected: UInt64) throws {
        #expect(try DurationSyntax.parseMilliseconds(text) == expected)
    }

    @Test func finerUnits() throws {
        #expect(try DurationSyntax.parse("1500us") == .microseconds(1500))
        #expect(try DurationSyntax.parse("7ns") == .nanoseconds(7))
        #expect(try DurationSyntax.parse("1.000000001s") == .nanoseconds(1_000_000_001))
        // Digits below a nanosecond are dropped, as Go does.
        #expect(try DurationSyntax.parse("1.0000000019s") == .nanoseconds(1_000_000_001))
        #expect(try DurationSyntax.parse("10s") == .seconds(10))
    }

    /// A bare number meant milliseconds to `wasmletctl run --timeout` and seconds to the
    /// `wasmlet.dev/timeout` annotation: now it is refused everywhere, with both readings offered.
    @Test(arguments: [("300", "300"), ("1", "1"), (" 42 ", "42"), ("1.5", "1.5"), ("007", "007")])
    func bareNumbersAreRefused(text: String, number: String) throws {
        let error = try #require(throws: ParseError.self) { try DurationSyntax.parse(text) }
        #expect(error.message.contains("add a unit, e.g. \(number)ms or \(number)s"), "\(error)")
    }

    @Test(arguments: [
        "", "  ", "s", "ms", "abc", "10d", "5 s", "5s ms", "1m30", "1.2.3s", "5sec", "5S", "1h-5m", "ten s", "0x10s",
        "1e3ms", "5s!",
    ])
    func junkIsRefused(text: String) {
        #expect(throws: ParseError.self) { try DurationSyntax.parse(text) }
    }

    @Test(arguments: ["-5s", "-0", "+5s", "-1m30s"])
    func signsAreRefused(text: String) throws {
        let error = try #require(throws: ParseError.self) { try DurationSyntax.parse(text) }
        #expect(error.message.contains("sign"))
    }

    /// Past Int64 nanoseconds (about 292 years), in one term or by adding terms up.
    @Test(arguments: ["2562048h", "9223372037s", "99999999999999999999ns", "2562047h60m", "9223372036854775807ns1ns"])
    func overflowIsRefused(text: String) throws {
        let error = try #require(throws: ParseError.self) { try DurationSyntax.parse(text) }
        #expect(error.message.contains("too long"), "\(error)")
    }

    @Test func theMostThatFits() throws {
        #expect(try DurationSyntax.parse("9223372036854775807ns") == .nanoseconds(Int64.max))
    }

    /// Where the resolution is a millisecond, a finer remainder is refused rather than rounded.
    @Test(arguments: ["1500us", "1.5ms", "1ns", "1s1us"])
    func subMillisecondRemaindersAreRefused(text: String) throws {
        let error = try #require(throws: ParseError.self) { try DurationSyntax.parseMilliseconds(text) }
        #expect(error.message.contains("whole number of milliseconds"))
    }
}
