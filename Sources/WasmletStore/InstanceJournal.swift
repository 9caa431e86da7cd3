import Glibc

/// The store's write-ahead journal: `<state-dir>/journal-<generation>.wal`.
///
/// A generation is a file of frames, written at increasing offsets and never rewritten:
///
///     magic u32 | length u32 | sequence u64 | crc32 u32 | payload (length bytes)
///
/// little-endian; the CRC (IEEE) covers the sequence and the payload. The payload's first byte
/// says what it is: `H` (header: the generation, as 8 little-endian bytes), `P` (the JSON of a
/// `PersistedInstance`: put this record) or `D` (the JSON of a key: the record is removed).
/// Frame 0 is the header; sequences count up by one. The file is pre-filled with zeros ahead of
/// the frames, so appending a batch and `fdatasync` touch no file-system metadata.
///
/// Reading stops at the first frame that is not intact (zeros, a torn write, a wrong sequence):
/// everything before it was written in order, and nothing after it was ever acknowledged,
/// because a batch is acknowledged only after its `fdatasync` and a failed batch ends its
/// generation (the next batch goes to a new file).
enum JournalFile {
    static let magic: UInt32 = 0x4A4C_5457  // "WTLJ"
    static let frameHeaderBytes = 20
    /// A frame longer than this is not a frame (records are a few hundred bytes).
    static let maxPayloadBytes = 16 << 20
    static let fileNamePrefix = "journal-"
    static let fileNameSuffix = ".wal"

    enum Kind: UInt8 {
        case header = 0x48  // H
        case put = 0x50  // P
        case remove = 0x44  // D
    }

    struct Frame {
        var kind: Kind
        /// The payload after the kind byte.
        var body: ArraySlice<UInt8>
    }

    static func fileName(generation: UInt64) -> String {
        fileNamePrefix + String(generation) + fileNameSuffix
    }

    /// The generation a file name belongs to, or nil for other files.
    static func generation(ofFileName name: String) -> UInt64? {
        guard name.hasPrefix(fileNamePrefix), name.hasSuffix(fileNameSuffix) else { return nil }
        return UInt64(name.dropFirst(fileNamePrefix.count).dropLast(fileNameSuffix.count))
    }

    /// Appends one frame to `buffer`.
    static func appendFrame(kind: Kind, body: [UInt8], sequence: UInt64, to buffer: inout [UInt8]) {
        let length = UInt32(body.count + 1)
        var crc = CRC32()
        withUnsafeBytes(of: sequence.littleEndian) { crc.update($0) }
        withUnsafeBytes(of: kind.rawValue) { crc.update($0) }
        body.withUnsafeBytes { crc.update($0) }
        append(magic, to: &buffer)
        append(length, to: &buffer)
        withUnsafeBytes(of: sequence.littleEndian) { buffer.append(contentsOf: $0) }
        append(crc.value, to: &buffer)
        buffer.append(kind.rawValue)
        buffer.append(contentsOf: body)
    }

    static func headerBody(generation: UInt64) -> [UInt8] {
        withUnsafeBytes(of: generation.littleEndian) { Array($0) }
    }

    /// The intact frames at the start of `bytes`, header excluded. Empty if the header is missing
    /// or names another generation (a file whose creation never became durable).
    static func frames(in bytes: [UInt8], generation: UInt64) -> [Frame] {
        var frames: [Frame] = []
        var offset = 0
        var expected: UInt64 = 0
        while offset + frameHeaderBytes <= bytes.count {
            guard read32(bytes, offset) == magic else { break }
            let length = Int(read32(bytes, offset + 4))
            let sequence = UInt64(read32(bytes, offset + 8)) | UInt64(read32(bytes, offset + 12)) << 32
            let stored = read32(bytes, offset + 16)
            let start = offset + frameHeaderBytes
            guard length >= 1, length <= maxPayloadBytes, start + length <= bytes.count, sequence == expected else { break }
            var crc = CRC32()
            withUnsafeBytes(of: sequence.littleEndian) { crc.update($0) }
            bytes.withUnsafeBytes { crc.update(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) }
            guard crc.value == stored, let kind = Kind(rawValue: bytes[start]) else { break }
            let body = bytes[(start + 1)..<(start + length)]
            if sequence == 0 {
                guard kind == .header, body.count == 8, Array(body) == headerBody(generation: generation) else { return [] }
            } else if kind != .header {
                frames.append(Frame(kind: kind, body: body))
            }
            expected += 1
            offset = start + length
        }
        return frames
    }

    private static func append(_ value: UInt32, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private static func read32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
struct CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    private var state: UInt32 = 0xFFFF_FFFF

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var crc = state
        Self.table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        state = crc
    }

    var value: UInt32 { state ^ 0xFFFF_FFFF }
}
