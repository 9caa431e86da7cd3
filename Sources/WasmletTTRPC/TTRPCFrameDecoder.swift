import NIOCore

/// Errors that make a byte stream unusable as ttrpc; the connection is closed on them.
public enum TTRPCProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The header's type byte is not 1, 2 or 3.
    case unknownMessageType(UInt8, streamID: UInt32)
    /// A request frame whose payload is not a `ttrpc.Request`, or a response frame whose payload is
    /// not a `ttrpc.Response`.
    case undecodableEnvelope(streamID: UInt32, reason: String)

    public var description: String {
        switch self {
        case .unknownMessageType(let type, let stream):
            "malformed ttrpc frame on stream \(stream): unknown message type \(type)"
        case .undecodableEnvelope(let stream, let reason):
            "malformed ttrpc frame on stream \(stream): \(reason)"
        }
    }
}

/// Splits the inbound byte stream into ttrpc frames (`TTRPCInboundFrame`).
///
/// Install as `ByteToMessageHandler(TTRPCFrameDecoder())`. NIO calls `decode` on the channel's
/// event loop whenever bytes arrive. A frame whose payload exceeds `maxPayloadLength` is not
/// buffered: its payload bytes are skipped as they arrive, and once the last one is skipped the
/// decoder emits `.oversized(header)` so the owner can answer that stream with RESOURCE_EXHAUSTED
/// and carry on with the next frame on the same connection. A frame with an unknown type byte
/// throws `TTRPCProtocolError.unknownMessageType`, which reaches the pipeline's `errorCaught`.
public struct TTRPCFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = TTRPCInboundFrame

    public let maxPayloadLength: Int

    /// Set while the payload of an oversized frame is being skipped.
    private var skipping: (header: TTRPCFrameHeader, remaining: Int)?

    public init(maxPayloadLength: Int = TTRPCFrameHeader.defaultMaxPayloadLength) {
        self.maxPayloadLength = maxPayloadLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if var skip = skipping {
            let count = min(buffer.readableBytes, skip.remaining)
            buffer.moveReaderIndex(forwardBy: count)
            skip.remaining -= count
            if skip.remaining > 0 {
                skipping = skip
                return .needMoreData
            }
            skipping = nil
            context.fireChannelRead(wrapInboundOut(.oversized(skip.header)))
            return .continue
        }

        guard let header = TTRPCFrameHeader.peek(in: buffer) else { return .needMoreData }
        guard let type = header.type else {
            throw TTRPCProtocolError.unknownMessageType(header.rawType, streamID: header.streamID)
        }
        let length = Int(header.payloadLength)
        if length > maxPayloadLength {
            buffer.moveReaderIndex(forwardBy: TTRPCFrameHeader.byteCount)
            skipping = (header, length)
            return .continue
        }
        guard buffer.readableBytes >= TTRPCFrameHeader.byteCount + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: TTRPCFrameHeader.byteCount)
        let payload = buffer.readSlice(length: length)!
        let frame = TTRPCFrame(streamID: header.streamID, type: type, flags: header.flags, payload: payload)
        context.fireChannelRead(wrapInboundOut(.frame(frame)))
        return .continue
    }

    /// Called once at end of input: decodes what is complete; a partial trailing frame is dropped.
    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}
