@_spi(Fuzzing) import WasmKit
import WasmKitWASI

/// Turns bytes into a `LoadedModule`, or an error that names what is wrong.
///
/// WasmKit translates function bodies lazily, so an ill-typed function would otherwise only fail
/// when first called, deep inside some guest's run. Validation therefore instantiates the module
/// once on an engine with eager compilation (start function dropped, so a hostile start cannot
/// run here). That costs a few milliseconds per *new* module, never per instance.
struct ModuleValidator: Sendable {
    static let wasiModuleName = "wasi_snapshot_preview1"

    let maxModuleBytes: Int
    private let validationEngine = Engine(configuration: EngineConfiguration(compilationMode: .eager))

    init(maxModuleBytes: Int) {
        self.maxModuleBytes = maxModuleBytes
    }

    func validate(bytes: [UInt8], digest: String) throws -> LoadedModule {
        guard bytes.count <= maxModuleBytes else {
            throw RuntimeError.invalidArgument(
                "module is \(bytes.count) bytes, over the size limit of \(maxModuleBytes) bytes")
        }
        guard bytes.count >= 8, bytes[0..<4] == [0x00, 0x61, 0x73, 0x6D] else {
            throw RuntimeError.invalidArgument("malformed module: not a WebAssembly binary (bad magic number)")
        }
        var module: Module
        do {
            module = try parseWasm(bytes: bytes)
        } catch {
            throw RuntimeError.invalidArgument("malformed module: \(error)")
        }
        try checkImports(module)
        try checkExports(module)
        let analysis = ModuleAnalysis.analyze(bytes)
        if analysis.bytes != bytes {
            do {
                module = try parseWasm(bytes: analysis.bytes)
            } catch {
                throw RuntimeError(.internal, "rewriting the module for instance reuse failed: \(error)")
            }
        }
        try checkInstantiates(module)
        return LoadedModule(
            digest: digest, byteCount: bytes.count, module: module, reusableGlobalExports: analysis.reusableGlobalExports)
    }

    private func checkImports(_ module: Module) throws {
        let supported = Self.supportedWASIFunctions
        for entry in module.imports {
            guard entry.module == Self.wasiModuleName else {
                throw RuntimeError.invalidArgument(
                    "unsupported import \(entry.module).\(entry.name): only \(Self.wasiModuleName) functions are provided")
            }
            guard case .function = entry.descriptor else {
                throw RuntimeError.invalidArgument(
                    "unsupported import \(entry.module).\(entry.name): only functions can be imported from WASI")
            }
            guard supported.contains(entry.name) else {
                throw RuntimeError.invalidArgument("unsupported import \(entry.module).\(entry.name): no such WASI preview1 function")
            }
        }
    }

    private func checkExports(_ module: Module) throws {
        guard let start = module.exports.first(where: { $0.name == "_start" }) else {
            throw RuntimeError.invalidArgument("module has no _start export: it is not a WASI command")
        }
        guard case .function = start.descriptor else {
            throw RuntimeError.invalidArgument("module's _start export is not a function")
        }
        guard module.exports.contains(where: { if case .memory = $0.descriptor { $0.name == "memory" } else { false } }) else {
            throw RuntimeError.invalidArgument("module exports no memory named \"memory\", which WASI requires")
        }
    }

    private func checkInstantiates(_ module: Module) throws {
        var module = module
        module.dropStartFunction()
        let store = Store(engine: validationEngine)
        let limiter = MemoryLimiter(capBytes: 0)  // reserve nothing: only translation is wanted
        limiter.unlimited = true
        store.resourceLimiter = limiter
        var imports = Imports()
        let bridge: WASIBridgeToHost
        do {
            bridge = try WASIBridgeToHost(args: [], environment: [:], preopens: [], stdin: -1, stdout: -1, stderr: -1)
        } catch {
            throw RuntimeError(.internal, "cannot create a WASI bridge for validation: \(error)")
        }
        defer { try? bridge.close() }
        bridge.link(to: &imports, store: store)
        do {
            _ = try module.instantiate(store: store, imports: imports)
        } catch {
            throw RuntimeError.invalidArgument("invalid module: \(error)")
        }
    }

    /// The names of every preview1 function we provide.
    static var supportedWASIFunctions: Set<String> { Set(wasiFunctionTypes.keys) }

    /// Every preview1 function WasmKit's bridge defines, and the socket calls, with their types.
    static let wasiFunctionTypes: [String: FunctionType] = {
        guard let bridge = try? WASIBridgeToHost(args: [], environment: [:], preopens: [], stdin: -1, stdout: -1, stderr: -1) else {
            return [:]
        }
        defer { try? bridge.close() }
        return bridge.hostFunctions(capabilities: WASICapability.all).mapValues(\.type).merging(socketFunctionTypes) { stock, _ in stock }
    }()

    /// The socket calls WasmKit leaves out (it has only sock_shutdown); ours are in WASISockets.swift.
    static let socketFunctionTypes: [String: FunctionType] = [
        "sock_accept": FunctionType(parameters: [.i32, .i32, .i32], results: [.i32]),
        "sock_recv": FunctionType(parameters: [.i32, .i32, .i32, .i32, .i32, .i32], results: [.i32]),
        "sock_send": FunctionType(parameters: [.i32, .i32, .i32, .i32, .i32], results: [.i32]),
        "sock_shutdown": FunctionType(parameters: [.i32, .i32], results: [.i32]),
    ]
}
