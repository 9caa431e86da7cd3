import NIOCore
import NIOEmbedded
import NIOHTTP1
import WasmletFuzzSupport
import WasmletHTTPTrigger

/// The HTTP trigger on arbitrary input. An input whose first byte is even is a client's bytes:
/// NIO's HTTP/1 parser, as the trigger's pipeline has it, then what each request becomes for its
/// guest (CGI request, route, argv, environment). An odd one is a guest's stdout, read as a CGI
/// response and made into the HTTP answer.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHTTPRequest.fuzz(FuzzMain.bytes(data, count))
    return 0
}

@main enum FuzzHTTPRequest {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }

    static func fuzz(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let rest = Array(input.dropFirst())
        guard first % 2 == 0 else {
            HTTPTriggerFuzzEntryPoints.answer(cgiOutput: rest)
            return
        }
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        defer { _ = try? channel.finish() }
        guard (try? channel.writeInbound(channel.allocator.buffer(bytes: rest))) != nil else { return }
        var head: HTTPRequestHead?
        var bodyLength = 0
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let next): head = next; bodyLength = 0
            case .body(let chunk): bodyLength += chunk.readableBytes
            case .end:
                if let head { HTTPTriggerFuzzEntryPoints.describe(head, bodyLength: bodyLength) }
                head = nil
            }
        }
    }
}
