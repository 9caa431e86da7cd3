import NIOCore
import NIOEmbedded
import WasmletFuzzSupport
import WasmletTTRPC

/// wasmletd's ttrpc frame decoder (SwiftNIO) on arbitrary bytes, arriving in pieces whose sizes
/// the input's first byte picks, then each request frame's payload as a ttrpc.Request.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzTTRPCFrame.fuzz(FuzzMain.bytes(data, count))
    return 0
}

@main enum FuzzTTRPCFrame {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }

    static func fuzz(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let piece = Int(first % 32) + 1
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(TTRPCFrameDecoder(maxPayloadLength: 4096)))
        defer { _ = try? channel.finish() }
        var offset = 1
        while offset < input.count {
            let end = min(input.count, offset + piece)
            do {
                try channel.writeInbound(channel.allocator.buffer(bytes: input[offset..<end]))
            } catch {
                return  // An unknown frame type: the connection would be closed here.
            }
            offset = end
            while let inbound = try? channel.readInbound(as: TTRPCInboundFrame.self) {
                guard case .frame(let frame) = inbound, frame.type == .request else { continue }
                guard let request = try? Ttrpc_Request(serializedBytes: Array(frame.payload.readableBytesView)) else { continue }
                _ = (request.service, request.method, request.timeoutNano, request.metadata.count)
            }
        }
    }
}
