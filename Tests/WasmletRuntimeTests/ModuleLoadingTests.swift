import Foundation
import Testing
@testable import WasmletRuntime

@Suite struct ModuleLoadingTests {
    @Test func loadsFromPathAndBytesWithOneDigest() throws {
        let runtime = try Fixtures.makeRuntime()
        let path = try Fixtures.guest("hello")
        let fromPath = try runtime.loadModule(path: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let fromBytes = try runtime.loadModule(bytes: bytes)
        #expect(fromPath.digest == fromBytes.digest)
        #expect(fromPath.digest.hasPrefix("sha256:") && fromPath.digest.count == 7 + 64)
        #expect(fromPath === fromBytes, "the second load must be served by the cache")
        let stats = runtime.statistics()
        #expect(stats.moduleCacheEntries == 1)
        #expect(stats.moduleCacheHits >= 1)
    }

    @Test func cacheEvictsLeastRecentlyUsed() throws {
        let runtime = try Fixtures.makeRuntime { $0.moduleCacheEntries = 2 }
        let a = try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 1) (func (export "_start")))"#))
        let b = try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 1) (func (export "_start") nop))"#))
        _ = runtime.module(digest: a.digest)  // a is now more recent than b
        let c = try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 2) (func (export "_start")))"#))
        #expect(runtime.module(digest: a.digest) != nil)
        #expect(runtime.module(digest: b.digest) == nil)
        #expect(runtime.module(digest: c.digest) != nil)
    }

    @Test func rejectsGarbage() throws {
        let runtime = try Fixtures.makeRuntime()
        let error = #expect(throws: RuntimeError.self) { try runtime.loadModule(bytes: Array("not wasm at all".utf8)) }
        #expect(error?.kind == .invalidArgument)
        #expect(error?.message.contains("malformed") == true)
    }

    @Test func rejectsTruncatedBinary() throws {
        let runtime = try Fixtures.makeRuntime()
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.guest("hello"))))
        let error = #expect(throws: RuntimeError.self) { try runtime.loadModule(bytes: Array(bytes.prefix(bytes.count / 2))) }
        #expect(error?.message.contains("malformed") == true)
    }

    @Test func rejectsOversizedModule() throws {
        let runtime = try Fixtures.makeRuntime { $0.maxModuleBytes = 1024 }
        let path = try Fixtures.guest("hello")
        let error = #expect(throws: RuntimeError.self) { try runtime.loadModule(path: path) }
        #expect(error?.message.contains("size limit of 1024") == true)
    }

    @Test func rejectsModuleWithoutStart() throws {
        let runtime = try Fixtures.makeRuntime()
        let error = #expect(throws: RuntimeError.self) {
            try runtime.loadModule(bytes: Fixtures.wat(#"(module (memory (export "memory") 1) (func (export "main")))"#))
        }
        #expect(error?.message.contains("no _start") == true)
    }

    @Test func rejectsUnsupportedImports() throws {
        let runtime = try Fixtures.makeRuntime()
        let foreign = #expect(throws: RuntimeError.self) {
            try runtime.loadModule(bytes: Fixtures.wat(#"""
                (module (import "env" "host_fn" (func)) (memory (export "memory") 1) (func (export "_start")))
                """#))
        }
        #expect(foreign?.message.contains("unsupported import env.host_fn") == true)
        let unknown = #expect(throws: RuntimeError.self) {
            try runtime.loadModule(bytes: Fixtures.wat(#"""
                (module (import "wasi_snapshot_preview1" "no_such_call" (func)) (memory (export "memory") 1) (func (export "_start")))
                """#))
        }
        #expect(unknown?.message.contains("no such WASI preview1 function") == true)
    }

    @Test func rejectsWrongImportSignature() throws {
        let runtime = try Fixtures.makeRuntime()
        let error = #expect(throws: RuntimeError.self) {
            try runtime.loadModule(bytes: Fixtures.wat(#"""
                (module (import "wasi_snapshot_preview1" "proc_exit" (func (param i64 i64)))
                  (memory (export "memory") 1) (func (export "_start")))
                """#))
        }
        #expect(error?.kind == .invalidArgument)
    }

    @Test func rejectsIllTypedFunctionAtLoadNotAtCall() throws {
        // Binary with a function body that leaves an i32 where none is expected: WAT would refuse
        // to assemble it, so patch a valid module's body instead.
        var bytes = try Fixtures.wat(#"(module (memory (export "memory") 1) (func (export "_start") nop nop nop))"#)
        guard let nop = bytes.lastIndex(of: 0x01) else { Issue.record("no nop"); return }
        bytes[nop - 2] = 0x41  // i32.const
        bytes[nop - 1] = 0x07  //   7
        bytes[nop] = 0x01  // nop -> leaves an i32 on the stack at `end`
        let runtime = try Fixtures.makeRuntime()
        let error = #expect(throws: RuntimeError.self) { try runtime.loadModule(bytes: bytes) }
        #expect(error?.kind == .invalidArgument)
    }

    @Test func missingFileIsNotFound() throws {
        let runtime = try Fixtures.makeRuntime()
        let error = #expect(throws: RuntimeError.self) { try runtime.loadModule(path: "/nonexistent/x.wasm") }
        #expect(error?.kind == .notFound)
    }
}
