import CWasmletInterrupt
import Glibc
import WasmKit

/// Finds the address of a `Store`'s fuel counter, which the kill mechanism zeroes from a signal
/// handler.
///
/// The counter is not public API. In WasmKit 0.4.2 it is `Store.remainingFuel`, a `Cell<UInt64>`
/// laid out inline in the `Store` object (see WasmKit's Platform/Cell.swift), so it sits at one
/// fixed offset for every store. We find that offset once by writing two distinctive budgets
/// through the public `fuel` setter and keeping the only slot that held both; if that is
/// ambiguous the runtime refuses to start rather than poke the wrong word. Every store is then
/// checked again with a third value before its address is trusted.
enum FuelCell {
    private static let probeA: UInt64 = 0x5741_534D_4C45_5431
    private static let probeB: UInt64 = 0x1234_F00D_CAFE_5678
    private static let probeC: UInt64 = 0x0BAD_5EED_0F00_D001

    /// The byte offset of the counter inside a `Store` object, or an error saying why not.
    static let offset: Result<Int, RuntimeError> = locateOffset()

    private static func locateOffset() -> Result<Int, RuntimeError> {
        let engine = Engine(configuration: EngineConfiguration(fuelMetering: true))
        let store = Store(engine: engine)
        let base = Unmanaged.passUnretained(store).toOpaque()
        let size = wasmlet_malloc_usable_size(base)
        guard size >= 24 else { return .failure(RuntimeError(.internal, "cannot size WasmKit's Store object")) }
        func slots(holding value: UInt64) -> Set<Int> {
            var found = Set<Int>()
            var offset = 16  // skip the isa pointer and reference counts
            while offset + 8 <= size {
                if base.load(fromByteOffset: offset, as: UInt64.self) == value { found.insert(offset) }
                offset += 8
            }
            return found
        }
        store.fuel = Fuel(remaining: probeA)
        let first = slots(holding: probeA)
        store.fuel = Fuel(remaining: probeB)
        let both = first.intersection(slots(holding: probeB))
        withExtendedLifetime(store) {}
        guard both.count == 1, let offset = both.first else {
            return .failure(RuntimeError(.internal,
                "cannot locate WasmKit's fuel counter (\(both.count) candidates); kill is unavailable with this WasmKit build"))
        }
        return .success(offset)
    }

    /// The counter's address inside `store`, verified for this very store.
    static func address(of store: Store) throws -> UnsafeMutablePointer<UInt64> {
        let offset = try offset.get()
        let pointer = (Unmanaged.passUnretained(store).toOpaque() + offset).assumingMemoryBound(to: UInt64.self)
        let saved = store.fuel
        store.fuel = Fuel(remaining: probeC)
        defer { store.fuel = saved }
        guard pointer.pointee == probeC else {
            throw RuntimeError(.internal, "WasmKit's fuel counter moved; refusing to run without a working kill")
        }
        return pointer
    }
}
