import Testing
import WasmletConventions
@testable import WasmletClient

/// The parsers only clients have; the shared ones are tested in WasmletConventionsTests.
@Suite struct ParsingTests {
    @Test(arguments: [
        ("TERM", 15), ("SIGTERM", 15), ("sigterm", 15), ("term", 15), ("KILL", 9), ("SIGKILL", 9),
        ("9", 9), ("15", 15), ("INT", 2), ("HUP", 1), ("USR1", 10), (" 2 ", 2), ("64", 64),
    ] as [(String, UInt32)])
    func signals(text: String, expected: UInt32) throws {
        #expect(try ArgumentParsing.parseSignal(text) == expected)
    }

    @Test(arguments: ["", "FOO", "SIG", "0", "65", "-9", "SIGFOO", "9x"])
    func badSignals(text: String) {
        #expect(throws: ParseError.self) { try ArgumentParsing.parseSignal(text) }
    }

    @Test func labelSelectors() throws {
        #expect(try ArgumentParsing.parseLabels([]) == [:])
        #expect(try ArgumentParsing.parseLabels(["app=web"]) == ["app": "web"])
        #expect(try ArgumentParsing.parseLabels(["app=web", "tier=1,zone=eu"]) == ["app": "web", "tier": "1", "zone": "eu"])
        #expect(try ArgumentParsing.parseLabels(["empty="]) == ["empty": ""])
        #expect(try ArgumentParsing.parseLabels(["a=1", "a=1"]) == ["a": "1"])
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["app"]) }
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["=web"]) }
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["a=1", "a=2"]) }
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["a=1,"]) }
    }
}
