import WasmletFuzzSupport
import WasmletShim

/// The shim's own wire code on arbitrary bytes: its ttrpc frame reader (fed in pieces whose
/// sizes the first byte picks), the ttrpc request and response envelopes, and the task messages
/// it decodes from containerd, each tried on every payload.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzShimWire.fuzz(FuzzMain.bytes(data, count))
    return 0
}

@main enum FuzzShimWire {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }

    static func fuzz(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let piece = Int(first % 32) + 1
        var reader = FrameReader(maxPayload: 4096)
        var offset = 1
        while offset < input.count {
            let end = min(input.count, offset + piece)
            reader.append(Array(input[offset..<end]))
            offset = end
            while true {
                let frame: Frame?
                do {
                    frame = try reader.next()
                } catch {
                    return  // Oversized: the shim closes the connection.
                }
                guard let frame else { break }
                decodeAll(frame.payload)
            }
        }
        decodeAll(Array(input.dropFirst()))
    }

    static func decodeAll(_ payload: [UInt8]) {
        if let request = try? TTRPCRequest(decoding: payload) {
            _ = try? CreateTaskRequest(decoding: request.payload)
            _ = try? TaskIDRequest(decoding: request.payload)
        }
        _ = try? TTRPCResponse(decoding: payload)
        _ = try? CreateTaskRequest(decoding: payload)
        _ = try? TaskIDRequest(decoding: payload)
        _ = TaskResponses.decodeWait(payload)
    }
}
