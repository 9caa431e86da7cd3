import NIOCore

/// Writes `TTRPCFrame`s as header + payload. Install as `MessageToByteHandler(TTRPCFrameEncoder())`;
/// NIO calls `encode` on the channel's event loop for every frame written to the pipeline.
/// It does not enforce the payload limit: the server and client check sizes before writing.
public struct TTRPCFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = TTRPCFrame

    public init() {}

    public func encode(data frame: TTRPCFrame, out: inout ByteBuffer) throws {
        out.reserveCapacity(minimumWritableBytes: TTRPCFrameHeader.byteCount + frame.payload.readableBytes)
        frame.header.write(to: &out)
        out.writeImmutableBuffer(frame.payload)
    }
}
