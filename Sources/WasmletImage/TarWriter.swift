import Foundation

/// A failure to write or read a tar archive.
public enum TarError: Error, Equatable, CustomStringConvertible {
    /// A path that fits neither the 100-byte name field nor a split at a "/" into the 155-byte
    /// prefix and the 100-byte name.
    case nameTooLong(String)
    case invalidPath(String)
    /// A number that does not fit its octal field (a file of 8 GiB or more, a time past 2242).
    case valueTooLarge(field: String, value: UInt64)
    case truncated(offset: Int)
    case badChecksum(offset: Int)
    case badHeader(offset: Int, detail: String)

    public var description: String {
        switch self {
        case .nameTooLong(let path):
            return "path \"\(path)\" is too long for a ustar header (at most 255 bytes, split at a \"/\" "
                + "into at most 155 + 100 bytes)"
        case .invalidPath(let path):
            return "invalid path \"\(path)\" in a tar archive"
        case .valueTooLarge(let field, let value):
            return "\(field) \(value) does not fit a ustar header"
        case .truncated(let offset):
            return "tar archive truncated at byte \(offset)"
        case .badChecksum(let offset):
            return "tar header at byte \(offset) has a wrong checksum"
        case .badHeader(let offset, let detail):
            return "tar header at byte \(offset): \(detail)"
        }
    }
}

/// Writes a POSIX ustar archive in memory: regular files and directories only, owner 0:0, no
/// user or group names, every time given by the caller (so the same input gives the same bytes).
/// Paths longer than 100 bytes go into the ustar prefix field when they can be split at a "/";
/// otherwise `nameTooLong` is thrown (no pax or GNU extensions are written).
public struct TarWriter {
    public static let blockSize = 512
    public private(set) var bytes: [UInt8] = []
    private var finished = false

    public init() {}

    /// Adds a directory entry. `path` is relative ("usr/lib"); a trailing "/" is added.
    public mutating func addDirectory(_ path: String, mode: UInt32 = 0o755, modificationTime: UInt64 = 0) throws {
        precondition(!finished, "TarWriter: entry added after finish()")
        let name = try Self.checkedPath(path) + "/"
        try appendHeader(name: name, mode: mode, size: 0, modificationTime: modificationTime, typeFlag: UInt8(ascii: "5"))
    }

    /// Adds a regular file entry with `contents`.
    public mutating func addFile(
        _ path: String, contents: some Collection<UInt8>, mode: UInt32 = 0o644, modificationTime: UInt64 = 0
    ) throws {
        precondition(!finished, "TarWriter: entry added after finish()")
        let name = try Self.checkedPath(path)
        try appendHeader(
            name: name, mode: mode, size: UInt64(contents.count), modificationTime: modificationTime,
            typeFlag: UInt8(ascii: "0"))
        bytes.append(contentsOf: contents)
        padToBlock()
    }

    /// Ends the archive with two zero blocks and returns it.
    public mutating func finish() -> [UInt8] {
        if !finished {
            bytes.append(contentsOf: [UInt8](repeating: 0, count: 2 * Self.blockSize))
            finished = true
        }
        return bytes
    }

    /// A relative path without empty, "." or ".." components and without NUL.
    static func checkedPath(_ path: String) throws -> String {
        var trimmed = Substring(path)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        let components = trimmed.split(separator: "/", omittingEmptySubsequences: false)
        guard !trimmed.isEmpty, !trimmed.hasPrefix("/"), !trimmed.utf8.contains(0),
            components.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." })
        else { throw TarError.invalidPath(path) }
        return String(trimmed)
    }

    /// Splits `name` into (prefix, name) for the ustar header: the whole name when it fits in
    /// 100 bytes, else the longest prefix of at most 155 bytes ending before a "/" whose rest
    /// fits in 100 bytes.
    static func splitName(_ name: String) throws -> (prefix: [UInt8], name: [UInt8]) {
        let utf8 = Array(name.utf8)
        if utf8.count <= 100 { return ([], utf8) }
        // A directory's trailing "/" belongs to the name part; look for a separator before it.
        let searchEnd = utf8.last == UInt8(ascii: "/") ? utf8.count - 1 : utf8.count
        var index = min(searchEnd - 1, 155)
        while index > 0 {
            if utf8[index] == UInt8(ascii: "/") {
                let rest = utf8.count - index - 1
                if rest > 100 { break }  // earlier slashes only make the rest longer
                if rest > 0 { return (Array(utf8[..<index]), Array(utf8[(index + 1)...])) }
            }
            index -= 1
        }
        throw TarError.nameTooLong(name)
    }

    private mutating func appendHeader(
        name: String, mode: UInt32, size: UInt64, modificationTime: UInt64, typeFlag: UInt8
    ) throws {
        let (prefix, shortName) = try Self.splitName(name)
        var header = [UInt8](repeating: 0, count: Self.blockSize)
        header.replaceSubrange(0..<shortName.count, with: shortName)
        try Self.writeOctal(UInt64(mode & 0o7777), into: &header, at: 100, width: 8, field: "mode")
        try Self.writeOctal(0, into: &header, at: 108, width: 8, field: "uid")
        try Self.writeOctal(0, into: &header, at: 116, width: 8, field: "gid")
        try Self.writeOctal(size, into: &header, at: 124, width: 12, field: "size")
        try Self.writeOctal(modificationTime, into: &header, at: 136, width: 12, field: "mtime")
        header[156] = typeFlag
        header.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
        header.replaceSubrange(263..<265, with: Array("00".utf8))
        try Self.writeOctal(0, into: &header, at: 329, width: 8, field: "devmajor")
        try Self.writeOctal(0, into: &header, at: 337, width: 8, field: "devminor")
        header.replaceSubrange(345..<(345 + prefix.count), with: prefix)
        // The checksum is the sum of the header's bytes with its own field read as 8 spaces,
        // written as six octal digits, NUL, space.
        let sum = header.enumerated().reduce(0) { total, item in
            total + ((148..<156).contains(item.offset) ? 32 : Int(item.element))
        }
        let digits = Array(String(sum, radix: 8).utf8)
        let field = [UInt8](repeating: UInt8(ascii: "0"), count: 6 - digits.count) + digits + [0, 32]
        header.replaceSubrange(148..<156, with: field)
        bytes.append(contentsOf: header)
    }

    /// Writes `value` as zero-padded octal digits followed by a NUL, filling `width` bytes.
    static func writeOctal(_ value: UInt64, into header: inout [UInt8], at offset: Int, width: Int, field: String) throws {
        let digits = Array(String(value, radix: 8).utf8)
        guard digits.count <= width - 1 else { throw TarError.valueTooLarge(field: field, value: value) }
        let padded = [UInt8](repeating: UInt8(ascii: "0"), count: width - 1 - digits.count) + digits + [0]
        header.replaceSubrange(offset..<(offset + width), with: padded)
    }

    private mutating func padToBlock() {
        let remainder = bytes.count % Self.blockSize
        if remainder != 0 { bytes.append(contentsOf: [UInt8](repeating: 0, count: Self.blockSize - remainder)) }
    }
}
