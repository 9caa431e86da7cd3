import WASI
import WasmKit
import WasmKitWASI

/// WasmKit's own preview1 functions for one run's bridge, built a capability at a time, when the
/// guest first calls into it.
///
/// Why lazily: `hostFunctions(capabilities: .all)` builds some 45 closures into a dictionary,
/// merged capability by capability, for every run. For a per-request hello under the HTTP trigger
/// that was 36 % of the guest thread's time (`perf record -a` under `wrk -c1`), more than the
/// guest's own code; such a guest calls into three of the eight capabilities.
///
/// Used on the guest's thread only.
struct StockWASIFunctions {
    private let bridge: WASIBridgeToHost
    /// By capability index (`Self.capabilities`); nil until that capability is first used.
    private var tables: [[String: WASIHostFunction<Memory>]?]

    init(bridge: WASIBridgeToHost) {
        self.bridge = bridge
        tables = Array(repeating: nil, count: Self.capabilities.count)
    }

    /// The function WasmKit defines under `name`, or nil when no capability has it (WasmKit then
    /// links an ENOSYS stub, which the caller answers in its place).
    mutating func function(_ name: String) -> WASIHostFunction<Memory>? {
        guard let index = Self.capabilityIndex[name] else { return nil }
        if let table = tables[index] { return table[name] }
        let table = bridge.hostFunctions(capabilities: [Self.capabilities[index]], stubUnlinked: false)
        tables[index] = table
        return table[name]
    }

    /// WasmKit's order: when capabilities overlap, the first one that has a name serves it.
    private static let capabilities = WASICapability.all

    /// Which capability serves each name, found once with a throwaway bridge.
    static let capabilityIndex: [String: Int] = {
        guard let bridge = try? WASIBridgeToHost(args: [], environment: [:], preopens: [], stdin: -1, stdout: -1, stderr: -1) else {
            return [:]
        }
        defer { try? bridge.close() }
        var index: [String: Int] = [:]
        for (position, capability) in capabilities.enumerated() {
            for name in bridge.hostFunctions(capabilities: [capability], stubUnlinked: false).keys where index[name] == nil {
                index[name] = position
            }
        }
        return index
    }()
}
