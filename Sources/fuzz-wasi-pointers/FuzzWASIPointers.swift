import WasmletFuzzSupport
import WasmletRuntime

/// The bounds checks in front of every WASI call, on arbitrary calls, arguments and memory:
/// whatever they let through must stay inside linear memory.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    RuntimeFuzzEntryPoints.checkPointers(FuzzMain.bytes(data, count))
    return 0
}

@main enum FuzzWASIPointers {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }
}
