import NIOCore
import NIOEmbedded
import Testing
@testable import WasmletTTRPC

@Suite("ttrpc frames")
struct FrameTests {
    @Test("header layout matches the doc example: 00 00 00 2A 00 00 00 01 01 00")
    func headerLayout() {
        let header = TTRPCFrameHeader(payloadLength: 42, streamID: 1, type: .request)
        #expect(header.bytes == [0x00, 0x00, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00])

        var buffer = ByteBuffer(bytes: [0x00, 0x01, 0x02, 0x03, 0x7F, 0xFF, 0xFF, 0xFF, 0x02, 0x04, 0xAA])
        let parsed = TTRPCFrameHeader.read(from: &buffer)
        #expect(parsed == TTRPCFrameHeader(payloadLength: 0x0001_0203, streamID: 0x7FFF_FFFF, type: .response, flags: 4))
        #expect(buffer.readableBytes == 1)
    }

    @Test("encoder writes header then payload")
    func encoder() throws {
        let frame = TTRPCFrame(streamID: 7, type: .response, payload: ByteBuffer(bytes: [1, 2, 3]))
        var out = ByteBuffer()
        try TTRPCFrameEncoder().encode(data: frame, out: &out)
        #expect(Array(out.readableBytesView) == [0, 0, 0, 3, 0, 0, 0, 7, 2, 0, 1, 2, 3])
    }

    @Test("decoder reassembles frames split across reads")
    func decoderSplitFrames() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(TTRPCFrameDecoder()))
        let bytes = TTRPCFrameHeader(payloadLength: 4, streamID: 3, type: .request).bytes + [9, 8, 7, 6]
            + TTRPCFrameHeader(payloadLength: 0, streamID: 5, type: .request).bytes
        for byte in bytes {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        let first = try channel.readInbound(as: TTRPCInboundFrame.self)
        let second = try channel.readInbound(as: TTRPCInboundFrame.self)
        #expect(first == .frame(TTRPCFrame(streamID: 3, type: .request, payload: ByteBuffer(bytes: [9, 8, 7, 6]))))
        #expect(second == .frame(TTRPCFrame(streamID: 5, type: .request, payload: ByteBuffer())))
        #expect(try channel.readInbound(as: TTRPCInboundFrame.self) == nil)
        _ = try channel.finish()
    }

    @Test("decoder skips an oversized payload without buffering it, then goes on")
    func decoderOversized() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(TTRPCFrameDecoder(maxPayloadLength: 16)))
        let big = TTRPCFrameHeader(payloadLength: 1000, streamID: 9, type: .request)
        try channel.writeInbound(ByteBuffer(bytes: big.bytes + [UInt8](repeating: 0xEE, count: 400)))
        // Nothing surfaces until the whole payload has gone by.
        #expect(try channel.readInbound(as: TTRPCInboundFrame.self) == nil)
        try channel.writeInbound(ByteBuffer(bytes: [UInt8](repeating: 0xEE, count: 600)))
        #expect(try channel.readInbound(as: TTRPCInboundFrame.self) == .oversized(big))
        // The next frame on the same stream of bytes decodes normally.
        try channel.writeInbound(ByteBuffer(bytes: TTRPCFrameHeader(payloadLength: 2, streamID: 11, type: .request).bytes + [1, 2]))
        #expect(
            try channel.readInbound(as: TTRPCInboundFrame.self)
                == .frame(TTRPCFrame(streamID: 11, type: .request, payload: ByteBuffer(bytes: [1, 2]))))
        _ = try channel.finish()
    }

    @Test("decoder rejects an unknown message type")
    func decoderUnknownType() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(TTRPCFrameDecoder()))
        let bytes = TTRPCFrameHeader(payloadLength: 0, streamID: 1, rawType: 9, flags: 0).bytes
        #expect(throws: TTRPCProtocolError.unknownMessageType(9, streamID: 1)) {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        }
        _ = try? channel.finish()
    }

    @Test("status codes use the gRPC numbering")
    func statusCodes() {
        #expect(TTRPCStatusCode.unimplemented.rawValue == 12)
        #expect(TTRPCStatusCode.resourceExhausted.rawValue == 8)
        #expect(TTRPCStatusCode.permissionDenied.rawValue == 7)
        #expect(TTRPCStatusCode.unauthenticated.rawValue == 16)
        #expect(TTRPCStatusCode(rawValue: 4).name == "DEADLINE_EXCEEDED")
        #expect(TTRPCError(.notFound, "x").description == "NOT_FOUND: x")
    }

    @Test("metadata keeps order and repeated keys")
    func metadata() {
        var metadata: TTRPCMetadata = ["containerd-namespace-ttrpc": "k8s.io", "a": "1"]
        metadata.append(key: "a", value: "2")
        #expect(metadata["a"] == "1")
        #expect(metadata.values(for: "a") == ["1", "2"])
        metadata["a"] = "3"
        #expect(metadata.values(for: "a") == ["3"])
        #expect(metadata.entries.first?.value == "k8s.io")
    }
}
