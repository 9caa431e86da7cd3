import WAT

/// The module the CRI pod sandbox container runs. A pod's sandbox has no program of its own:
/// it must stay alive until it is killed. Running it as a real (tiny) instance rather than a
/// placeholder gives it everything instances have for free: durable records, kill, exit codes
/// and the daemon-restart rule. It sleeps in `poll_oneoff`, which our WASI layer makes
/// kill-aware, so it costs no CPU and dies at once.
enum SandboxModule {
    static let text = """
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

    static func bytes() throws -> [UInt8] { try wat2wasm(text) }
}
