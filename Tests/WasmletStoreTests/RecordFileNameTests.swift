import Testing

@testable import WasmletStore

@Suite struct RecordFileNameTests {
    @Test func recordFileNamesCannotEscape() {
        #expect(RecordFileName.component("..") == "%2e.")
        #expect(RecordFileName.component(".hidden") == "%2ehidden")
        #expect(RecordFileName.component("web-1_a.b") == "web-1_a.b")
        #expect(RecordFileName.component("a b") == "a%20b")
        #expect(!RecordFileName.component(String(repeating: "ü", count: 120)).contains("%"))
    }
}
