// A hand-written subset of the protobuf wire format: just enough to read and write the handful of
// ttrpc and containerd messages the shim touches. The shim cannot link swift-protobuf (it pulls in
// Foundation, megabytes per pod), and it only ever needs varints and length-delimited fields.
//
// Encoding rules followed (proto3): scalar fields equal to their default (0, "", empty bytes,
// false) are omitted; embedded messages are always written, even when empty, because their
// presence can matter (an empty Timestamp is still "set").

/// Protobuf wire types.
public enum ProtoWireType: UInt8, Sendable {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case fixed32 = 5
}

/// Why a byte sequence is not a valid protobuf message.
public enum ProtoError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated
    case varintTooLong
    case invalidFieldNumber
    /// Wire types 3 and 4 (groups) are deprecated and never used by ttrpc or containerd; 6 and 7
    /// do not exist.
    case unsupportedWireType(UInt8)

    public var description: String {
        switch self {
        case .truncated: "truncated protobuf message"
        case .varintTooLong: "protobuf varint longer than 10 bytes"
        case .invalidFieldNumber: "protobuf field number 0"
        case .unsupportedWireType(let type): "unsupported protobuf wire type \(type)"
        }
    }
}

/// One field read from a message. For varint/fixed fields `value` holds the number; for
/// length-delimited fields `range` locates the content inside the reader's byte array.
public struct ProtoField: Sendable {
    public let number: Int
    public let wireType: ProtoWireType
    public let value: UInt64
    public let range: Range<Int>
}

/// Reads the fields of one message in order. Unknown fields are simply the fields a caller does
/// not look at: `next()` already skips over their content.
public struct ProtoReader {
    public let bytes: [UInt8]
    private var index: Int
    private let end: Int

    /// Reads `bytes[range]` (the whole array when `range` is nil). An out-of-bounds range is
    /// clamped, so a bad length can never trap.
    public init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        let whole = 0..<bytes.count
        let chosen = (range ?? whole).clamped(to: whole)
        index = chosen.lowerBound
        end = chosen.upperBound
    }

    /// The next field, or nil at the end of the message.
    public mutating func next() throws(ProtoError) -> ProtoField? {
        guard index < end else { return nil }
        let key = try readVarint()
        let number = key >> 3
        guard number > 0, number <= UInt64(Int32.max) else { throw .invalidFieldNumber }
        let rawType = UInt8(key & 7)
        guard let wireType = ProtoWireType(rawValue: rawType) else { throw .unsupportedWireType(rawType) }
        switch wireType {
        case .varint:
            let value = try readVarint()
            return ProtoField(number: Int(number), wireType: wireType, value: value, range: index..<index)
        case .fixed64:
            let value = try readLittleEndian(byteCount: 8)
            return ProtoField(number: Int(number), wireType: wireType, value: value, range: index..<index)
        case .fixed32:
            let value = try readLittleEndian(byteCount: 4)
            return ProtoField(number: Int(number), wireType: wireType, value: value, range: index..<index)
        case .lengthDelimited:
            let length = try readVarint()
            guard length <= UInt64(end - index) else { throw .truncated }
            let start = index
            index += Int(length)
            return ProtoField(number: Int(number), wireType: wireType, value: length, range: start..<index)
        }
    }

    private mutating func readVarint() throws(ProtoError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < end else { throw .truncated }
            let byte = bytes[index]
            index += 1
            // The 10th byte may only contribute the top bit; more bytes are malformed.
            guard shift < 64 else { throw .varintTooLong }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func readLittleEndian(byteCount: Int) throws(ProtoError) -> UInt64 {
        guard end - index >= byteCount else { throw .truncated }
        var result: UInt64 = 0
        for offset in 0..<byteCount {
            result |= UInt64(bytes[index + offset]) << (8 * UInt64(offset))
        }
        index += byteCount
        return result
    }

    // MARK: Field content helpers

    /// A length-delimited field's content as a String (invalid UTF-8 is repaired, not trapped on).
    public func string(_ field: ProtoField) -> String {
        String(decoding: bytes[field.range], as: UTF8.self)
    }

    /// A length-delimited field's content as bytes.
    public func data(_ field: ProtoField) -> [UInt8] {
        Array(bytes[field.range])
    }

    /// A reader over an embedded message field.
    public func message(_ field: ProtoField) -> ProtoReader {
        ProtoReader(bytes, range: field.range)
    }
}

extension ProtoField {
    /// int32 fields are sign-extended to 64 bits on the wire; truncating gives the value back.
    public var int32: Int32 { Int32(truncatingIfNeeded: value) }
    public var int64: Int64 { Int64(bitPattern: value) }
    public var uint32: UInt32 { UInt32(truncatingIfNeeded: value) }
    public var bool: Bool { value != 0 }
}

/// Appends fields to a growing message.
public struct ProtoWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func appendVarint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    public mutating func appendKey(_ field: Int, _ type: ProtoWireType) {
        appendVarint(UInt64(field) << 3 | UInt64(type.rawValue))
    }

    public mutating func uint64(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        appendKey(field, .varint)
        appendVarint(value)
    }

    public mutating func uint32(_ field: Int, _ value: UInt32) { uint64(field, UInt64(value)) }

    public mutating func int64(_ field: Int, _ value: Int64) { uint64(field, UInt64(bitPattern: value)) }

    /// Negative int32 values take 10 bytes: they are sign-extended to 64 bits first.
    public mutating func int32(_ field: Int, _ value: Int32) { int64(field, Int64(value)) }

    public mutating func bool(_ field: Int, _ value: Bool) { uint64(field, value ? 1 : 0) }

    public mutating func string(_ field: Int, _ value: String) {
        guard !value.isEmpty else { return }
        lengthDelimited(field, Array(value.utf8))
    }

    public mutating func data(_ field: Int, _ value: [UInt8]) {
        guard !value.isEmpty else { return }
        lengthDelimited(field, value)
    }

    /// An embedded message: written even when empty (presence can matter).
    public mutating func message(_ field: Int, _ value: [UInt8]) {
        lengthDelimited(field, value)
    }

    /// An embedded message built in place.
    public mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        build(&inner)
        message(field, inner.bytes)
    }

    /// An element of a repeated string field: written even when empty (position matters).
    public mutating func repeatedString(_ field: Int, _ value: String) {
        lengthDelimited(field, Array(value.utf8))
    }

    private mutating func lengthDelimited(_ field: Int, _ value: [UInt8]) {
        appendKey(field, .lengthDelimited)
        appendVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }
}
