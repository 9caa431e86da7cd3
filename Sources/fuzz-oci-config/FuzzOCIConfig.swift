import WasmletContainerd
import WasmletFuzzSupport
import WasmletShim

/// An OCI bundle's config.json on arbitrary bytes, read by both of its readers: the daemon's
/// mapping of it to an instance (`ContainerdFuzzEntryPoints.mapSpec`), and the shim's own JSON
/// scanner, which reads its annotations and network namespace without Foundation.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = FuzzMain.bytes(data, count)
    ContainerdFuzzEntryPoints.mapSpec(input)
    _ = ContainerNetworkFacts(spec: input)
    _ = SpecAnnotations.value(forKey: "wasmlet.dev/listen", inSpec: input)
    return 0
}

@main enum FuzzOCIConfig {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }
}
