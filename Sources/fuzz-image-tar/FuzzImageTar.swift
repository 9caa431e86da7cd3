import WasmletFuzzSupport
import WasmletImage

/// The image archive reader on arbitrary bytes: the tar reader, then the OCI layout inside it
/// (index, manifests, configs, blobs checked against their digests), as `wasmletctl image inspect` reads it.
///
/// `LLVMFuzzerTestOneInput` is libFuzzer's entry point: its archive's `main` calls it.
#if FUZZING  // Only there: test bundles link every fuzz target, and one symbol each would collide.
@_cdecl("LLVMFuzzerTestOneInput")
#endif
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = FuzzMain.bytes(data, count)
    if let tar = try? TarReader(input) {
        _ = tar.contents(of: "index.json")
        _ = tar.contents(of: "oci-layout")
    }
    _ = try? ImageArchive.inspect(bytes: input)
    return 0
}

@main enum FuzzImageTar {
    static func main() {
        FuzzMain.run(fuzzOneInput)
    }
}
