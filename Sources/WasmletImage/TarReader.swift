import Foundation

/// One entry of a tar archive.
public struct TarEntry: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case file
        case directory
        case other(UInt8)
    }

    /// The path as stored, without a trailing "/" for directories.
    public var path: String
    public var kind: Kind
    public var mode: UInt32
    public var size: Int
    public var modificationTime: UInt64
    /// Where the contents start in the archive.
    public var dataOffset: Int
}

/// Reads ustar archives (and the pax `path`/`size` records and GNU long names some writers
/// use) far enough to find files in an OCI image archive. Checksums are verified.
public struct TarReader {
    public let bytes: [UInt8]
    public let entries: [TarEntry]

    public init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        self.entries = try Self.parse(bytes)
    }

    /// The contents of the regular file at `path` (a leading "./" or "/" is ignored), if any.
    public func contents(of path: String) -> ArraySlice<UInt8>? {
        let wanted = Self.normalized(path)
        guard let entry = entries.last(where: { $0.kind == .file && Self.normalized($0.path) == wanted }) else {
            return nil
        }
        return bytes[entry.dataOffset..<(entry.dataOffset + entry.size)]
    }

    static func normalized(_ path: String) -> String {
        var result = Substring(path)
        while result.hasPrefix("./") { result = result.dropFirst(2) }
        while result.hasPrefix("/") { result = result.dropFirst() }
        while result.hasSuffix("/") { result = result.dropLast() }
        return String(result)
    }

    private static func parse(_ bytes: [UInt8]) throws -> [TarEntry] {
        var entries: [TarEntry] = []
        var offset = 0
        var pendingPath: String?
        var pendingSize: Int?
        while true {
            guard offset + 512 <= bytes.count else {
                // Archives normally end with zero blocks, but some writers stop at the last entry.
                if offset == bytes.count { return entries }
                throw TarError.truncated(offset: offset)
            }
            let headerOffset = offset
            let header = bytes[offset..<(offset + 512)]
            if header.allSatisfy({ $0 == 0 }) { return entries }
            let stored = try octal(header, 148, 8, offset: offset)
            let sum = header.enumerated().reduce(0) { total, item in
                total + ((148..<156).contains(item.offset) ? 32 : Int(item.element))
            }
            guard stored == UInt64(sum) else { throw TarError.badChecksum(offset: offset) }
            let typeFlag = header[header.startIndex + 156]
            let size = try pendingSize ?? Int(octal(header, 124, 12, offset: offset))
            let dataOffset = offset + 512
            guard dataOffset + size <= bytes.count else { throw TarError.truncated(offset: dataOffset) }
            let data = bytes[dataOffset..<(dataOffset + size)]
            offset = dataOffset + (size + 511) / 512 * 512
            switch typeFlag {
            case UInt8(ascii: "x"):
                for (key, value) in try paxRecords(data, offset: dataOffset) {
                    if key == "path" { pendingPath = value }
                    if key == "size" { pendingSize = Int(value) }
                }
                continue
            case UInt8(ascii: "g"):
                continue
            case UInt8(ascii: "L"):
                pendingPath = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
                continue
            default:
                break
            }
            var path: String
            if let pendingPath {
                path = pendingPath
            } else {
                let name = string(header, 0, 100)
                let magic = Array(header[(header.startIndex + 257)..<(header.startIndex + 262)])
                let prefix = magic == Array("ustar".utf8) ? string(header, 345, 155) : ""
                path = prefix.isEmpty ? name : prefix + "/" + name
            }
            pendingPath = nil
            pendingSize = nil
            var kind: TarEntry.Kind
            switch typeFlag {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = path.hasSuffix("/") ? .directory : .file
            case UInt8(ascii: "5"): kind = .directory
            default: kind = .other(typeFlag)
            }
            while path.hasSuffix("/") { path.removeLast() }
            entries.append(
                TarEntry(
                    path: path, kind: kind, mode: UInt32(try octal(header, 100, 8, offset: headerOffset)),
                    size: size, modificationTime: try octal(header, 136, 12, offset: headerOffset),
                    dataOffset: dataOffset))
        }
    }

    private static func string(_ header: ArraySlice<UInt8>, _ start: Int, _ length: Int) -> String {
        let field = header[(header.startIndex + start)..<(header.startIndex + start + length)]
        return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// An octal field: digits, possibly surrounded by spaces, ended by NUL or space.
    private static func octal(_ header: ArraySlice<UInt8>, _ start: Int, _ length: Int, offset: Int) throws -> UInt64 {
        let field = header[(header.startIndex + start)..<(header.startIndex + start + length)]
        if let first = field.first, first & 0x80 != 0 {
            throw TarError.badHeader(offset: offset, detail: "base-256 numbers are not supported")
        }
        let text = String(decoding: field.prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        if text.isEmpty { return 0 }
        guard let value = UInt64(text, radix: 8) else {
            throw TarError.badHeader(offset: offset, detail: "bad octal number \"\(text)\"")
        }
        return value
    }

    /// pax extended header records: "LEN key=value\n".
    private static func paxRecords(_ data: ArraySlice<UInt8>, offset: Int) throws -> [(String, String)] {
        var records: [(String, String)] = []
        var rest = data[...]
        while !rest.isEmpty {
            guard let space = rest.firstIndex(of: UInt8(ascii: " ")),
                let length = Int(String(decoding: rest[rest.startIndex..<space], as: UTF8.self)),
                length > 0, rest.count >= length
            else { throw TarError.badHeader(offset: offset, detail: "bad pax record") }
            let record = rest[(space + 1)..<(rest.startIndex + length - 1)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                records.append(
                    (String(decoding: record[..<equals], as: UTF8.self),
                     String(decoding: record[(equals + 1)...], as: UTF8.self)))
            }
            rest = rest[(rest.startIndex + length)...]
        }
        return records
    }
}
