import WasmKit

/// A parsed, validated module, shared by every instance with the same digest.
///
/// WasmKit's `Module` is `Sendable` and immutable, so one parse serves all threads.
public final class LoadedModule: Sendable {
    /// `sha256:<64 hex>` of the module's bytes.
    public let digest: String
    public let byteCount: Int
    let module: Module
    /// Export names of the module's mutable globals when its instances may be reused between
    /// runs, else nil (see `ModuleAnalysis`).
    let reusableGlobalExports: [String]?

    init(digest: String, byteCount: Int, module: Module, reusableGlobalExports: [String]?) {
        self.digest = digest
        self.byteCount = byteCount
        self.module = module
        self.reusableGlobalExports = reusableGlobalExports
    }
}
