import WasmletDaemon
import WasmletFuzzSupport

/// wasmletd's `--config` TOML file on arbitrary text.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    DaemonFuzzEntryPoints.parseConfiguration(FuzzMain.bytes(data, count))
    return 0
}

@main enum FuzzConfigTOML {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }
}
