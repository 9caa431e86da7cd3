import Testing
import WasmletConventions

/// `TOMLPreflight`: non-ASCII text is refused outside strings and comments, where TOMLKit's
/// parser would abort the process on it, and accepted inside them, where TOML allows it.
@Suite struct TOMLPreflightTests {
    @Test(arguments: [
        ("[é]", 1, 2), ("[[ü]]", 1, 3), ("é = 1", 1, 1), ("a = é", 1, 5), ("a.é = 1", 1, 3),
        ("a = \"ok\" é", 1, 10), ("# ç\nx = 'ç'\n[ñ]", 3, 2), ("a = \"\"\"\nç\"\"\"\n[ø]", 3, 2),
        ("a = '''x''''' ø", 1, 15), ("a = \"\\\"\" ø", 1, 10),
    ] as [(String, Int, Int)])
    func refusesNonASCIIOutsideStringsAndComments(text: String, line: Int, column: Int) {
        #expect {
            try TOMLPreflight.check(text)
        } throws: { error in
            "\(error)".hasPrefix("line \(line), column \(column): a non-ASCII character outside a string or comment")
        }
    }

    @Test(arguments: [
        "socket = \"/run/wasmlet/ß.sock\"", "a = 'ç'", "\"é\" = 1", "'é' = 1", "# ünïcode comment",
        "a = \"\"\"\nmulti ç \"quoted\" \\\"\"\" \nline\"\"\"", "a = '''\nç ''' ", "a = \"\\\\\" # ø",
        "a = \"unterminated ç", "",
    ])
    func acceptsNonASCIIInsideStringsAndComments(text: String) throws {
        try TOMLPreflight.check(text)
    }
}
