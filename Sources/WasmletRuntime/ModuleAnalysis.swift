import WasmParser

/// Decides whether instances of a module can be reused between runs, and prepares the module
/// for it.
///
/// Why: WasmKit translates each function into the instance's own store on first call, and that
/// translation is most of a short guest's start (about 0.5 ms of a 0.7 ms C hello here). Reusing
/// a translated instance skips it, but only if the next run sees exactly what a fresh instance
/// would. A run can change three kinds of state:
/// - linear memory: restored from a copy taken right after instantiation (and the instance is
///   dropped if memory grew, since memory cannot shrink);
/// - mutable globals (e.g. the C stack pointer, which `proc_exit` leaves wherever it was): the
///   module is rewritten to export every mutable global under a private name, so they can be
///   read and restored through WasmKit's public API;
/// - tables and passive segments: modules that contain `table.set/grow/fill/copy/init`,
///   `elem.drop` or `data.drop` are never reused, nor are modules with a start function.
struct ModuleAnalysis {
    /// The bytes to instantiate: the original, or the original with extra global exports.
    var bytes: [UInt8]
    /// Export names of every mutable global, when instances may be reused.
    var reusableGlobalExports: [String]?

    static let globalExportPrefix = "__wasmlet_global_"

    static func analyze(_ original: [UInt8]) -> ModuleAnalysis {
        guard let facts = try? Facts(original), facts.isReusable,
            let rewritten = try? addGlobalExports(to: original, facts: facts)
        else { return ModuleAnalysis(bytes: original, reusableGlobalExports: nil) }
        return ModuleAnalysis(bytes: rewritten.bytes, reusableGlobalExports: rewritten.names)
    }

    private struct Facts {
        var hasStart = false
        var importedGlobals = 0
        var globalMutability: [Mutability] = []
        var exportedGlobals: [UInt32: String] = [:]
        var mutatesTablesOrSegments = false

        var isReusable: Bool { !hasStart && !mutatesTablesOrSegments && importedGlobals == 0 }

        init(_ bytes: [UInt8]) throws {
            var parser = Parser(bytes: bytes)
            while let payload = try parser.parseNext() {
                switch payload {
                case .importSection(let imports):
                    importedGlobals = imports.filter { if case .global = $0.descriptor { true } else { false } }.count
                case .globalSection(let globals):
                    globalMutability = globals.map(\.type.mutability)
                case .exportSection(let exports):
                    for export in exports {
                        if case .global(let index) = export.descriptor { exportedGlobals[index] = export.name }
                    }
                case .startSection:
                    hasStart = true
                case .codeSection(let bodies):
                    for body in bodies where !mutatesTablesOrSegments {
                        var scanner = StateMutationScanner()
                        var expression = ExpressionParser(code: body)
                        while let visit = try expression.parse() {
                            visit(visitor: &scanner)
                            if scanner.found { break }
                        }
                        mutatesTablesOrSegments = scanner.found
                    }
                default:
                    break
                }
            }
        }
    }

    /// Flags instructions that change tables or segment state, which a reset cannot restore.
    private struct StateMutationScanner: AnyInstructionVisitor {
        typealias VisitorError = Never
        var binaryOffset = 0
        var found = false

        mutating func visit(_ instruction: Instruction) {
            switch instruction {
            case .tableSet, .tableGrow, .tableFill, .tableCopy, .tableInit, .elemDrop, .dataDrop:
                found = true
            default:
                break
            }
        }
    }

    private struct RewriteError: Error {}

    /// Re-encodes the export section with one extra export per mutable global lacking one.
    private static func addGlobalExports(to bytes: [UInt8], facts: Facts) throws -> (bytes: [UInt8], names: [String]) {
        var names: [String] = []
        var extra: [UInt8] = []
        var extraCount: UInt32 = 0
        for (index, mutability) in facts.globalMutability.enumerated() where mutability == .variable {
            let globalIndex = UInt32(index)
            if let name = facts.exportedGlobals[globalIndex] {
                names.append(name)
                continue
            }
            let name = globalExportPrefix + String(globalIndex)
            names.append(name)
            extra += leb(UInt32(name.utf8.count)) + Array(name.utf8) + [0x03] + leb(globalIndex)
            extraCount += 1
        }
        guard extraCount > 0 else { return (bytes, names) }

        var output = Array(bytes[0..<8])
        var position = 8
        var rewrote = false
        while position < bytes.count {
            let id = bytes[position]
            var cursor = position + 1
            let size = try readLEB(bytes, &cursor)
            let contentStart = cursor
            let contentEnd = contentStart + Int(size)
            guard contentEnd <= bytes.count else { throw RewriteError() }
            if id == 7 {
                var inner = contentStart
                let count = try readLEB(bytes, &inner)
                let content = leb(count + extraCount) + Array(bytes[inner..<contentEnd]) + extra
                output += [7] + leb(UInt32(content.count)) + content
                rewrote = true
            } else {
                output += bytes[position..<contentEnd]
            }
            position = contentEnd
        }
        guard rewrote else { throw RewriteError() }
        return (output, names)
    }

    private static func leb(_ value: UInt32) -> [UInt8] {
        var value = value
        var result: [UInt8] = []
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            result.append(byte)
        } while value != 0
        return result
    }

    private static func readLEB(_ bytes: [UInt8], _ cursor: inout Int) throws -> UInt32 {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            guard cursor < bytes.count, shift < 35 else { throw RewriteError() }
            let byte = bytes[cursor]
            cursor += 1
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }
}
