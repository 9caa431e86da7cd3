import Foundation
import Testing

@testable import WasmletImage

@Suite("TarWriter")
struct TarWriterTests {
    /// An octal header field as text, and whether it ends with NUL (or NUL+space for the checksum).
    private func field(_ header: ArraySlice<UInt8>, _ offset: Int, _ width: Int) -> [UInt8] {
        Array(header[(header.startIndex + offset)..<(header.startIndex + offset + width)])
    }

    @Test("header fields: zero-padded NUL-terminated octal, ustar magic, checksum by the spec's rule")
    func headerFields() async throws {
        var tar = TarWriter()
        try tar.addFile("dir/file.txt", contents: Array("hello\n".utf8), mode: 0o640, modificationTime: 1_700_000_000)
        let bytes = tar.finish()
        #expect(bytes.count == 512 + 512 + 1024)
        let header = bytes[0..<512]
        #expect(field(header, 0, 13) == Array("dir/file.txt\0".utf8))
        #expect(field(header, 100, 8) == Array("0000640\0".utf8))
        #expect(field(header, 108, 8) == Array("0000000\0".utf8))
        #expect(field(header, 124, 12) == Array("00000000006\0".utf8))
        #expect(field(header, 136, 12) == Array((String(1_700_000_000, radix: 8) + "\0").utf8))
        #expect(header[156] == UInt8(ascii: "0"))
        #expect(field(header, 257, 8) == Array("ustar\000".utf8))
        // Checksum: unsigned sum of all 512 bytes with the checksum field counted as spaces.
        var sum = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 32 : Int(byte) }
        let checksum = field(header, 148, 8)
        #expect(checksum[6] == 0 && checksum[7] == 32)
        #expect(Int(String(decoding: checksum[0..<6], as: UTF8.self), radix: 8) == sum)
        #expect(Array(bytes[512..<518]) == Array("hello\n".utf8))
        #expect(bytes[518..<bytes.count].allSatisfy { $0 == 0 })
    }

    @Test("the system tar extracts every size, mode, time and long name exactly")
    func systemTarExtracts() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let longDirectory = String(repeating: "d", count: 90) + "/" + String(repeating: "e", count: 60)  // 151 bytes
        let hundred = String(repeating: "n", count: 100)
        let files: [(String, [UInt8], UInt32)] = [
            ("empty", [], 0o644),
            ("one", [0x41], 0o600),
            ("block-511", (0..<511).map { UInt8($0 % 251) }, 0o644),
            ("block-512", (0..<512).map { UInt8($0 % 253) }, 0o755),
            ("block-513", (0..<513).map { UInt8($0 % 241) }, 0o644),
            ("big", (0..<(3 * 65536 + 17)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }, 0o644),
            (hundred, Array("exactly 100 bytes".utf8), 0o644),
            (longDirectory + "/" + String(repeating: "f", count: 99), Array("long".utf8), 0o755),
            ("ünïcødé/名前.txt", Array("utf8".utf8), 0o644),
        ]
        var tar = TarWriter()
        try tar.addDirectory("top", modificationTime: 86_400)
        try tar.addDirectory(String(repeating: "d", count: 90), modificationTime: 86_400)
        try tar.addDirectory(longDirectory, mode: 0o750, modificationTime: 86_400)
        for (path, contents, mode) in files {
            try tar.addFile(path, contents: contents, mode: mode, modificationTime: 1_234_567_890)
        }
        let archive = directory.file("test.tar")
        try write(tar.finish(), to: archive)

        let out = directory.file("out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let extract = try await runProcess(systemTar, ["-xf", archive, "-C", out, "--no-same-owner"])
        #expect(extract.status == 0, "tar -x: \(extract.stderr)")
        #expect(extract.stderr.isEmpty, "tar warned: \(extract.stderr)")
        for (path, contents, mode) in files {
            let extracted = out + "/" + path
            #expect(try readBytes(extracted) == contents, "\(path)")
            let attributes = try FileManager.default.attributesOfItem(atPath: extracted)
            #expect((attributes[.posixPermissions] as? NSNumber)?.uint32Value == mode, "\(path) mode")
            #expect((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_234_567_890, "\(path) mtime")
        }
        let dirAttributes = try FileManager.default.attributesOfItem(atPath: out + "/" + longDirectory)
        #expect((dirAttributes[.posixPermissions] as? NSNumber)?.uint32Value == 0o750)

        // tar's own listing: the names (long ones rebuilt from the prefix field), sizes, owners.
        let list = try await runProcess(systemTar, ["-tvf", archive, "--numeric-owner", "--utc"])
        #expect(list.status == 0, "tar -t: \(list.stderr)")
        let lines = list.stdout.split(separator: "\n")
        #expect(lines.count == 3 + files.count)
        #expect(lines.allSatisfy { $0.contains(" 0/0 ") })
        #expect(lines.contains { $0.hasSuffix(" " + longDirectory + "/" + String(repeating: "f", count: 99)) })
        #expect(lines.contains { $0.contains(" \(3 * 65536 + 17) ") && $0.hasSuffix(" big") })
        // The test can fail: one flipped bit in a header makes tar refuse the archive.
        var corrupted = try readBytes(archive)
        corrupted[5] ^= 0x01
        try write(corrupted, to: directory.file("bad.tar"))
        let bad = try await runProcess(systemTar, ["-tf", directory.file("bad.tar")])
        #expect(bad.status != 0)
    }

    @Test("names that fit neither field nor prefix+name are refused; bad paths are refused")
    func longNamesRefused() async throws {
        var tar = TarWriter()
        // One 101-byte component: no "/" to split at.
        #expect(throws: TarError.nameTooLong(String(repeating: "x", count: 101))) {
            try tar.addFile(String(repeating: "x", count: 101), contents: [])
        }
        // The last component fits, but the directory part is 156 bytes.
        let tooDeep = String(repeating: "p", count: 156) + "/name"
        #expect(throws: TarError.nameTooLong(tooDeep)) { try tar.addFile(tooDeep, contents: []) }
        // 155 + "/" + 100 = 256 bytes is the longest that fits.
        let longest = String(repeating: "p", count: 155) + "/" + String(repeating: "n", count: 100)
        try tar.addFile(longest, contents: [1])
        let split = try TarWriter.splitName(longest)
        #expect(split.prefix.count == 155 && split.name.count == 100)
        for bad in ["", "/abs", "a/../b", "./a", "a//b", "a/./b"] {
            #expect(throws: TarError.invalidPath(bad)) { try tar.addFile(bad, contents: []) }
        }
        #expect(throws: TarError.valueTooLarge(field: "mtime", value: 1 << 33 | 1 << 34)) {
            try tar.addFile("t", contents: [], modificationTime: 1 << 33 | 1 << 34)
        }
    }

    @Test("TarReader reads back what TarWriter wrote, and what the system tar wrote")
    func readBack() async throws {
        var tar = TarWriter()
        let long = String(repeating: "a", count: 120) + "/" + String(repeating: "b", count: 80)
        try tar.addDirectory("d", modificationTime: 5)
        try tar.addFile(long, contents: Array("x".utf8), mode: 0o755, modificationTime: 7)
        let reader = try TarReader(tar.finish())
        #expect(reader.entries.map(\.path) == ["d", long])
        #expect(reader.entries[0].kind == .directory)
        #expect(reader.entries[1].mode == 0o755 && reader.entries[1].modificationTime == 7)
        #expect(reader.contents(of: "/" + long).map(Array.init) == Array("x".utf8))

        // GNU tar's own archive, with a 300-byte name (a GNU long-name or pax record).
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let deep = (0..<10).map { _ in String(repeating: "z", count: 29) }.joined(separator: "/")
        try FileManager.default.createDirectory(atPath: directory.file("src/" + deep), withIntermediateDirectories: true)
        try write(Array("deep".utf8), to: directory.file("src/" + deep + "/file"))
        for format in ["gnu", "pax"] {
            let archive = directory.file("\(format).tar")
            let result = try await runProcess(systemTar, ["--format=\(format)", "-cf", archive, "-C", directory.file("src"), "."])
            #expect(result.status == 0, "\(result.stderr)")
            let read = try TarReader(try readBytes(archive))
            #expect(read.contents(of: deep + "/file").map(Array.init) == Array("deep".utf8), "\(format)")
        }
    }
}
