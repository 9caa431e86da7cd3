import Testing
import WAT

@testable import WasmletContainerd

/// The pod sandbox's module is embedded as bytes (the daemon links no WAT parser); this is its
/// source, and the bytes must be exactly what it assembles to.
@Suite struct SandboxModuleTests {
    static let source = """
        (module
          (import "wasi_snapshot_preview1" "poll_oneoff"
            (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            ;; One clock subscription at offset 0 (48 bytes): userdata, tag 0 = clock at 8,
            ;; clock id 1 = monotonic at 16, relative timeout (ns) at 24; the event goes to 64,
            ;; the count of events to 128.
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const 3600000000000))
            (loop $forever
              (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
              (br $forever))))
        """

    @Test func embeddedBytesAreTheAssembledSource() throws {
        let assembled = try wat2wasm(Self.source)
        #expect(SandboxModule.bytes == assembled, "wat2wasm gives \(assembled)")
    }
}
