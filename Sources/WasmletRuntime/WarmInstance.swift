@_spi(Fuzzing) import WasmKit
import Synchronization

/// An instantiated module with its store, ready to run `_start`, and able to put itself back
/// into its just-instantiated state so a later run can reuse its translated code.
///
/// A store is not thread-safe; a warm instance is used by one guest thread at a time and is
/// handed between threads only through `InstancePool`'s lock.
final class WarmInstance: @unchecked Sendable {
    let store: Store
    let instance: Instance
    let slot: HostSlot
    let entry: Function
    let memory: Memory
    let fuelCell: UnsafeMutablePointer<UInt64>
    private let snapshot: Snapshot?

    private struct Snapshot {
        var memory: [UInt8]
        var globals: [(Global, Value)]
    }

    /// Instantiates `module`; throws what instantiation threw (the caller classifies it).
    /// `reusable: false` takes no snapshot, so the instance can never go back to the pool.
    init(module: LoadedModule, engine: Engine, limiter: MemoryLimiter, reusable: Bool = true) throws {
        let store = Store(engine: engine)
        let slot = HostSlot()
        self.store = store
        self.slot = slot
        store.resourceLimiter = limiter
        var imports = Imports()
        WASIHost.link(into: &imports, store: store, slot: slot)
        let instance = try module.module.instantiate(store: store, imports: imports)
        self.instance = instance
        fuelCell = try FuelCell.address(of: store)
        guard let entry = instance.exports[function: "_start"], let memory = instance.exports[memory: "memory"] else {
            throw RuntimeError.invalidArgument("module lacks _start or memory exports")
        }
        self.entry = entry
        self.memory = memory
        if reusable, let names = module.reusableGlobalExports {
            let globals = names.compactMap { name in instance.exports[global: name].map { ($0, $0.value) } }
            var bytes = memory.withUnsafeBufferPointer(offset: 0, count: memory.byteCount) { [UInt8]($0) }
            if bytes.count >= ZeroPages.worthwhileBytes { bytes.withUnsafeMutableBytes { ZeroPages.release($0) } }
            snapshot = globals.count == names.count ? Snapshot(memory: bytes, globals: globals) : nil
        } else {
            snapshot = nil
        }
        releaseZeroPages()
    }

    /// A large linear memory's all-zero pages go back to the kernel (see ZeroPages).
    private func releaseZeroPages() {
        guard memory.byteCount >= ZeroPages.worthwhileBytes else { return }
        memory.withUnsafeMutableBufferPointer(offset: 0, count: memory.byteCount) { ZeroPages.release(UnsafeMutableRawBufferPointer($0)) }
    }

    var memoryBytes: UInt64 { UInt64(memory.byteCount) }

    /// Restores memory and globals to their state right after instantiation. Returns false when
    /// that is impossible (module not reusable, or memory grew), and the instance must be dropped.
    func reset() -> Bool {
        guard let snapshot, memory.byteCount == snapshot.memory.count else { return false }
        memory.withUnsafeMutableBufferPointer(offset: 0, count: snapshot.memory.count) { target in
            snapshot.memory.withUnsafeBytes { target.copyMemory(from: $0) }
        }
        for (global, value) in snapshot.globals {
            guard (try? global.assign(value)) != nil else { return false }
        }
        releaseZeroPages()
        return true
    }
}

/// Idle warm instances per (module, engine), bounded, most recently returned first.
final class InstancePool: Sendable {
    private struct Key: Hashable {
        let digest: String
        let stackBytes: UInt64
    }

    private let idle = Mutex<[Key: [WarmInstance]]>([:])
    let maxIdlePerModule: Int

    init(maxIdlePerModule: Int) {
        self.maxIdlePerModule = maxIdlePerModule
    }

    func acquire(digest: String, stackBytes: UInt64) -> WarmInstance? {
        idle.withLock { $0[Key(digest: digest, stackBytes: stackBytes)]?.popLast() }
    }

    func release(_ instance: WarmInstance, digest: String, stackBytes: UInt64) {
        // Once here, another thread may take the instance at once: nothing of the finished run
        // may still be plugged in.
        assert(instance.slot.host == nil, "a warm instance was released with its run's WASI host still attached")
        idle.withLock { idle in
            let key = Key(digest: digest, stackBytes: stackBytes)
            if idle[key, default: []].count < maxIdlePerModule { idle[key, default: []].append(instance) }
        }
    }

    /// Drops every idle instance of a module (e.g. when the module leaves the cache).
    func drain(digest: String) {
        idle.withLock { idle in idle = idle.filter { $0.key.digest != digest } }
    }

    var idleCount: Int { idle.withLock { $0.values.reduce(0) { $0 + $1.count } } }
}
