import WasmletFuzzSupport
import WasmletRuntime

/// Module validation, as Create runs it, on arbitrary bytes.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    RuntimeFuzzEntryPoints.validateModule(FuzzMain.bytes(data, count))
    return 0
}

@main enum FuzzModule {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }
}
