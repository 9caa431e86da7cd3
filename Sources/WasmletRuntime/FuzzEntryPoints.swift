import WasmKit

/// The runtime's parsers and checks on arbitrary bytes, for the fuzz targets `fuzz-module` and
/// `fuzz-wasi-pointers` (Sources/fuzz-*, scripts/fuzz.sh). Package-visible only: nothing in the
/// product calls them.
package enum RuntimeFuzzEntryPoints {
    private static let validator = ModuleValidator(maxModuleBytes: 1 << 20)

    /// Module validation as Create runs it: size and magic, parse, imports and exports, the
    /// analysis and rewrite for reuse, and the eager instantiation. Errors are the expected
    /// outcome; a crash or a sanitizer report is the finding.
    package static func validateModule(_ bytes: [UInt8]) {
        _ = try? validator.validate(bytes: bytes, digest: "fuzz")
    }

    /// One page of linear memory to check pointers against (a module of just `(memory 1)`).
    /// The store and instance are kept for as long as the memory is used.
    private final class OnePage {
        let store = Store(engine: Engine())
        let instance: Instance
        let memory: Memory
        init() {
            let bytes: [UInt8] = [
                0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00,
                0x05, 0x03, 0x01, 0x00, 0x01,
                0x07, 0x0A, 0x01, 0x06, 0x6D, 0x65, 0x6D, 0x6F, 0x72, 0x79, 0x02, 0x00,
            ]
            instance = try! parseWasm(bytes: bytes).instantiate(store: store)
            memory = instance.exports[memory: "memory"]!
        }
    }
    nonisolated(unsafe) private static let page = OnePage()
    private static var memory: Memory { page.memory }

    private static let callNames = WASIPointerChecks.table.keys.sorted()

    /// `WASIPointerChecks.check` for one call, with the input choosing the call, its arguments,
    /// the string tables' sizes and the memory's contents (so iovec entries are the input's too).
    /// The property: whenever the check lets a call through, every region the call will touch
    /// is inside memory, which is shown by touching each one through WasmKit's own accessors,
    /// which trap the process on an out-of-bounds access exactly as its WASI implementation would.
    package static func checkPointers(_ input: [UInt8]) {
        guard input.count >= 1 + 4 * 9 + 16 else { return }
        let name = callNames[Int(input[0]) % callNames.count]
        func word(_ offset: Int) -> UInt32 {
            input[offset..<offset + 4].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        }
        // Arguments land near the page more often than uniformly random words would.
        let size = UInt32(memory.byteCount)
        let arguments: [Value] = (0..<9).map { index in
            let raw = word(1 + 4 * index)
            return .i32(raw & 0x8000_0000 == 0 ? raw % (size + 64) : raw)
        }
        let sizes = (1 + 36..<1 + 36 + 16).map { UInt64(input[$0]) }
        let tableSizes = (args: (sizes[0] % 64, sizes[1] * 97 % (UInt64(size) + 64)),
                          environment: (sizes[2] % 64, sizes[3] * 97 % (UInt64(size) + 64)))
        let contents = input[(1 + 36 + 16)...].prefix(Int(size))
        memory.withUnsafeMutableBufferPointer(offset: 0, count: Int(size)) { page in
            page.initializeMemory(as: UInt8.self, repeating: 0)
            page.copyBytes(from: contents)
        }
        guard WASIPointerChecks.check(name, arguments, memory: memory, tableSizes: tableSizes) else { return }

        func u32(_ index: Int) -> UInt64 {
            guard case .i32(let value) = arguments[index] else { return 0 }
            return UInt64(value)
        }
        func touch(_ start: UInt64, _ count: UInt64) {
            guard count > 0 else { return }
            memory.withUnsafeMutableBufferPointer(offset: UInt(start), count: Int(count)) { region in
                region[0] = region[0]
                region[region.count - 1] = region[region.count - 1]
            }
        }
        for region in WASIPointerChecks.table[name]! {
            switch region {
            case .fixed(let pointer, let bytes):
                touch(u32(pointer), bytes)
            case .bytes(let pointer, let length):
                touch(u32(pointer), u32(length))
            case .array(let pointer, let count, let element):
                touch(u32(pointer), u32(count) * element)
            case .iovecs(let pointer, let count):
                touch(u32(pointer), u32(count) * 8)
                for index in 0..<u32(count) {
                    let entry = UInt(u32(pointer) + index * 8)
                    let (base, length) = memory.withUnsafeBufferPointer(offset: entry, count: 8) {
                        (UInt64($0.loadUnaligned(as: UInt32.self)), UInt64($0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
                    }
                    touch(base, length)
                }
            case .stringTable(let pointers, let buffer, let kind):
                let (count, bytes) = kind == .args ? tableSizes.args : tableSizes.environment
                touch(u32(pointers), count * 4)
                touch(u32(buffer), bytes)
            }
        }
    }
}
