import Testing
import WasmletConventions

/// One size syntax for every program (`ByteSize`): whole numbers, powers of 1024.
@Suite struct ByteSizeTests {
    @Test(arguments: [
        ("65536", 65536), ("1", 1), ("512B", 512), ("64K", 64 << 10), ("64k", 64 << 10), ("64Ki", 64 << 10),
        ("64KiB", 64 << 10), ("16M", 16 << 20), ("16mi", 16 << 20), ("16MiB", 16 << 20), ("16mib", 16 << 20),
        ("1G", 1 << 30), ("2g", 2 << 30), ("8GiB", 8 << 30), ("1T", 1 << 40), ("3TiB", 3 << 40),
        (" 128MiB ", 128 << 20), ("512 MiB", 512 << 20), ("16777215T", 16_777_215 << 40),
        ("18446744073709551615", UInt64.max),
    ] as [(String, UInt64)])
    func sizes(text: String, expected: UInt64) throws {
        #expect(try ByteSize.parse(text) == expected)
    }

    @Test(arguments: [
        "", " ", "0", "0K", "K", "MiB", "12X", "12KX", "-1", "+1", "1.5M", "1,5M", "1e6", "16P", "0x10",
        "12  K", "K12", "١٢",
    ])
    func junkIsRefused(text: String) {
        #expect(throws: ParseError.self) { try ByteSize.parse(text) }
    }

    /// Past 2^64 - 1 bytes, with or without a unit: an error, never a trap or a wrapped value.
    @Test(arguments: ["18446744073709551616", "99999999999999999999G", "17179869184G", "16777216T", "18014398509481984K"])
    func overflowIsRefused(text: String) throws {
        let error = try #require(throws: ParseError.self) { try ByteSize.parse(text) }
        #expect(error.message.contains("too large"))
    }

    /// KB, MB, GB, TB mean powers of 1000 to some readers: refused, with the unambiguous spelling.
    @Test(arguments: [("16MB", "16MiB"), ("64kb", "64KiB"), ("1GB", "1GiB"), ("2TB", "2TiB")])
    func decimalLookingUnitsAreRefused(text: String, suggestion: String) throws {
        let error = try #require(throws: ParseError.self) { try ByteSize.parse(text) }
        #expect(error.message.contains("ambiguous"))
        #expect(error.message.contains(suggestion))
    }
}
