import NIOCore

/// The `type` byte of a ttrpc frame header (byte 8).
public enum TTRPCMessageType: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// Carries a `ttrpc.Request`; sent by clients on odd stream ids.
    case request = 1
    /// Carries a `ttrpc.Response` on the stream id of its request.
    case response = 2
    /// Streaming data; defined by ttrpc, not used by unary calls.
    case data = 3

    public var description: String {
        switch self {
        case .request: "request"
        case .response: "response"
        case .data: "data"
        }
    }
}

/// The fixed 10-byte header in front of every ttrpc frame, all big-endian:
///
///     bytes 0-3  payload length (uint32)
///     bytes 4-7  stream id (uint32)
///     byte  8    type (1 request, 2 response, 3 data)
///     byte  9    flags (0 for unary requests and responses)
///
/// A unary request on stream 1 with a 42-byte payload: `00 00 00 2A 00 00 00 01 01 00`.
/// Plain value type: usable from any thread.
public struct TTRPCFrameHeader: Sendable, Hashable, CustomStringConvertible {
    /// Size of the header on the wire.
    public static let byteCount = 10
    /// The largest payload ttrpc peers accept: 4 MiB.
    public static let defaultMaxPayloadLength = 4 << 20

    public var payloadLength: UInt32
    public var streamID: UInt32
    /// The raw type byte; see `type` for the known values.
    public var rawType: UInt8
    public var flags: UInt8

    public init(payloadLength: UInt32, streamID: UInt32, type: TTRPCMessageType, flags: UInt8 = 0) {
        self.init(payloadLength: payloadLength, streamID: streamID, rawType: type.rawValue, flags: flags)
    }

    public init(payloadLength: UInt32, streamID: UInt32, rawType: UInt8, flags: UInt8) {
        self.payloadLength = payloadLength
        self.streamID = streamID
        self.rawType = rawType
        self.flags = flags
    }

    /// The message type, or nil when the type byte is not one ttrpc defines.
    public var type: TTRPCMessageType? { TTRPCMessageType(rawValue: rawType) }

    /// Appends the 10 header bytes to `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(payloadLength, endianness: .big)
        buffer.writeInteger(streamID, endianness: .big)
        buffer.writeInteger(rawType)
        buffer.writeInteger(flags)
    }

    /// The 10 header bytes.
    public var bytes: [UInt8] {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return buffer.readBytes(length: Self.byteCount)!
    }

    /// Reads a header at the reader index of `buffer` without consuming it; nil when fewer than
    /// 10 bytes are readable.
    public static func peek(in buffer: ByteBuffer) -> TTRPCFrameHeader? {
        let base = buffer.readerIndex
        guard buffer.readableBytes >= byteCount,
            let length = buffer.getInteger(at: base, endianness: .big, as: UInt32.self),
            let stream = buffer.getInteger(at: base + 4, endianness: .big, as: UInt32.self),
            let type = buffer.getInteger(at: base + 8, as: UInt8.self),
            let flags = buffer.getInteger(at: base + 9, as: UInt8.self)
        else { return nil }
        return TTRPCFrameHeader(payloadLength: length, streamID: stream, rawType: type, flags: flags)
    }

    /// Reads and consumes a header; nil (and nothing consumed) when fewer than 10 bytes are readable.
    public static func read(from buffer: inout ByteBuffer) -> TTRPCFrameHeader? {
        guard let header = peek(in: buffer) else { return nil }
        buffer.moveReaderIndex(forwardBy: byteCount)
        return header
    }

    public var description: String {
        "ttrpc frame header(stream \(streamID), \(type.map(\.description) ?? "type \(rawType)"), flags \(flags), \(payloadLength) bytes)"
    }
}

/// One whole ttrpc frame: header fields plus the payload bytes.
public struct TTRPCFrame: Sendable, Equatable {
    public var streamID: UInt32
    public var type: TTRPCMessageType
    public var flags: UInt8
    public var payload: ByteBuffer

    public init(streamID: UInt32, type: TTRPCMessageType, flags: UInt8 = 0, payload: ByteBuffer) {
        self.streamID = streamID
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    /// The header this frame is sent with.
    public var header: TTRPCFrameHeader {
        TTRPCFrameHeader(
            payloadLength: UInt32(truncatingIfNeeded: payload.readableBytes), streamID: streamID,
            type: type, flags: flags)
    }
}

/// What `TTRPCFrameDecoder` passes up the pipeline.
public enum TTRPCInboundFrame: Sendable, Equatable {
    /// A complete frame within the size limit.
    case frame(TTRPCFrame)
    /// A frame whose payload was larger than the limit. Its payload was skipped without being
    /// buffered; the header tells which stream to answer with RESOURCE_EXHAUSTED.
    case oversized(TTRPCFrameHeader)
}
