import CWasmletInterrupt

/// Names the calling thread, as `top -H` and `ps -L` show it (the kernel keeps 15 bytes).
///
/// Why not Foundation's `Thread.name`: set from inside a new thread's closure it was sometimes
/// lost on Linux, and the thread kept its creator's name (a libdispatch worker's), so a chaos
/// test that counts the daemon's threads by name counted the journal writer as a worker.
public func nameCurrentThread(_ name: String) {
    wasmlet_set_thread_name(name)
}
