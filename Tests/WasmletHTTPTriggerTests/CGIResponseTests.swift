import Testing

@testable import WasmletHTTPTrigger

@Suite struct CGIResponseTests {
    func parse(_ text: String) throws(CGIResponse.Invalid) -> CGIResponse { try CGIResponse.parse(Array(text.utf8)) }

    @Test func contentTypeAloneIs200WithTheRestAsBody() throws {
        let response = try parse("Content-Type: text/plain\n\nhello\n\nworld")
        #expect(response.status == 200)
        #expect(response.headers.map(\.name) == ["Content-Type"])
        #expect(Array(response.body) == Array("hello\n\nworld".utf8))
    }

    @Test func crlfLineEndsWork() throws {
        let response = try parse("Content-Type: text/plain\r\nX-A:  b \r\n\r\nbody")
        #expect(response.headers.map { "\($0.name)=\($0.value)" } == ["Content-Type=text/plain", "X-A=b"])
        #expect(Array(response.body) == Array("body".utf8))
    }

    /// Spaces and tabs around a name or a value go (RFC 9110's optional white space); inside a
    /// value they stay, and so does any other byte, UTF-8 included.
    @Test func optionalWhiteSpaceAroundNamesAndValuesIsTrimmed() throws {
        let response = try parse("Content-Type:\t text/plain \t\nX-A : \t b \t c\t \nX-B:\t\t\nX-C: caf\u{e9} \n\n")
        #expect(response.headers.map { "\($0.name)=\($0.value)" } == ["Content-Type=text/plain", "X-A=b \t c", "X-B=", "X-C=caf\u{e9}"])
    }

    @Test func statusSetsTheCodeAndIsNotPassedOn() throws {
        let response = try parse("Status: 404 Not Here\nContent-Type: text/plain\n\n")
        #expect(response.status == 404)
        #expect(response.reason == "Not Here")
        #expect(!response.headers.contains { $0.name.lowercased() == "status" })
        #expect(try parse("status: 201\n\n").status == 201)
    }

    @Test func locationWithoutStatusIs302AndWithStatusKeepsIt() throws {
        #expect(try parse("Location: /elsewhere\n\n").status == 302)
        #expect(try parse("Status: 301 Moved\nLocation: /x\n\n").status == 301)
    }

    @Test func framingHeadersAreTheServersOwn() throws {
        let response = try parse("Content-Type: a\nContent-Length: 999\nTransfer-Encoding: chunked\nConnection: close\n\nx")
        #expect(response.headers.map(\.name) == ["Content-Type"])
    }

    @Test func outputThatIsNotCGIIsRefusedWithItsReason() {
        #expect(throws: CGIResponse.Invalid.noBlankLine) { try parse("Content-Type: text/plain\nno blank line") }
        #expect(throws: CGIResponse.Invalid.noBlankLine) { try parse("") }
        #expect(throws: CGIResponse.Invalid.malformedHeaderLine("just words")) { try parse("just words\n\n") }
        #expect(throws: CGIResponse.Invalid.badStatus("abc")) { try parse("Status: abc\n\n") }
        #expect(throws: CGIResponse.Invalid.badStatus("99 Low")) { try parse("Status: 99 Low\n\n") }
        #expect(throws: CGIResponse.Invalid.badStatus("600")) { try parse("Status: 600\n\n") }
        #expect(throws: CGIResponse.Invalid.noRequiredHeader) { try parse("X-Only: 1\n\nbody") }
        #expect(throws: CGIResponse.Invalid.malformedHeaderLine(": empty name")) { try parse(": empty name\n\n") }
    }

    /// A guest cannot put a line break or a NUL into the answer's head (a bare CR ends a line
    /// for some clients): such output is refused, with the line shown safely.
    @Test func controlCharactersAndNonTokenNamesAreRefused() throws {
        #expect(throws: CGIResponse.Invalid.forbiddenCharacter("X-A: 1?Injected: yes")) {
            try parse("Content-Type: text/plain\nX-A: 1\rInjected: yes\n\n")
        }
        #expect(throws: CGIResponse.Invalid.forbiddenCharacter("X-Nul: a?b")) { try parse("Content-Type: t\nX-Nul: a\u{0}b\n\n") }
        #expect(throws: CGIResponse.Invalid.forbiddenCharacter("Bad Name: x")) { try parse("Content-Type: t\nBad Name: x\n\n") }
        #expect(throws: CGIResponse.Invalid.forbiddenCharacter("Status: 200 O?K")) { try parse("Status: 200 O\rK\n\n") }
        // Tabs and bytes past ASCII (obs-text) are allowed in values.
        let response = try parse("Content-Type: text/plain\nX-Tab: a\tb\nX-Latin: caf\u{E9}\n\nbody")
        #expect(response.headers.map(\.value) == ["text/plain", "a\tb", "caf\u{E9}"])
    }

    @Test func aHeaderSectionPastItsLimitIsNotCGI() {
        let long = "Content-Type: text/plain\n" + String(repeating: "X-Pad: \(String(repeating: "p", count: 100))\n", count: 700) + "\nbody"
        #expect(throws: CGIResponse.Invalid.noBlankLine) { try parse(long) }
    }
}
