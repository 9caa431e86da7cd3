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

/// The other assertion fuzz-config-toml found: a table header whose key does not start with a
/// bare-key character or a quote. A `[` that starts a line inside an array is a value.
@Suite struct TOMLPreflightHeaderTests {
    @Test(arguments: [
        ("[#x]", 1, 2), ("[[#", 1, 3), ("  [ =a]", 1, 5), ("a = 1\n[\n", 2, 2), ("[\nb = 1", 1, 2), ("[[ {", 1, 4),
        ("[[[a]]]", 1, 3), ("a = [1]\n[.x]", 2, 2),
    ] as [(String, Int, Int)])
    func refusesAHeaderWithoutAKey(text: String, line: Int, column: Int) {
        #expect {
            try TOMLPreflight.check(text)
        } throws: { error in
            "\(error)".hasPrefix("line \(line), column \(column): a table header must name a key")
        }
    }

    @Test(arguments: [
        "[a]", "[[a.b]]", "[ \"q\" ]", "['l'.x]", "[ a ]", "[]", "a = [\n  [1, 2],\n  [{x = 1}],\n  [ \"#\" ],\n]",
        "a = {b = [\n[# not a header: a nested array, then a comment\n]]}", "a = \"\"\"\n[#\n\"\"\"", "# [#",
    ])
    func acceptsHeadersAndArraysThatStartLines(text: String) throws {
        try TOMLPreflight.check(text)
    }
}

/// The third assertion fuzz-config-toml found (CI, stop 23): a `}` where an array expects its next
/// value. A bracket may close only what it opened; brackets inside strings and comments are text.
@Suite struct TOMLPreflightBracketTests {
    @Test(arguments: [
        ("a = [}]", 1, 6), ("a = [2,}", 1, 8), ("a = [\n}]", 2, 1), ("a = [ # c\n}", 2, 1), ("a = [1,#\n  }", 2, 3),
        ("a = {b = [1}}", 1, 12), ("a = [{]}", 1, 7),
        ("efs    = [2,}{s    = [2, 2, 2,=  }{s    = [2, 2,=  }\0]\n", 1, 13),
    ] as [(String, Int, Int)])
    func refusesABracketThatClosesWhatItDidNotOpen(text: String, line: Int, column: Int) {
        #expect {
            try TOMLPreflight.check(text)
        } throws: { error in
            "\(error)".hasPrefix("line \(line), column \(column): '") && "\(error)".contains("must close the")
        }
    }

    @Test(arguments: [
        "a = [1, {b = [2]}, [{}]]", "a = {b = [1, 2], c = {d = []}}", "a = ['}', \"]\", '''{'''] # ]}",
        "a = [\n  1, # }\n  2,\n]", "[t]\nx = {}\n[[u]]\ny = []",
    ])
    func acceptsBalancedBrackets(text: String) throws {
        try TOMLPreflight.check(text)
    }
}
