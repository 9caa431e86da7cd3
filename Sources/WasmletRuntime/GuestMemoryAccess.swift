import WasmKit

/// Bounds-checked access to a guest's linear memory for our own host functions.
///
/// WasmKit's `Memory.withUnsafe...BufferPointer` *preconditions* on bounds, which would take the
/// whole daemon down on a hostile pointer; every access here checks first and reports EFAULT.
struct GuestMemoryAccess {
    let memory: Memory

    struct Fault: Error {}

    private func check(_ address: UInt32, _ count: Int) throws(Fault) {
        guard count >= 0, UInt64(address) + UInt64(count) <= UInt64(memory.byteCount) else { throw Fault() }
    }

    func load<T: FixedWidthInteger>(_ address: UInt32, as: T.Type) throws(Fault) -> T {
        let size = MemoryLayout<T>.size
        try check(address, size)
        return memory.withUnsafeBufferPointer(offset: UInt(address), count: size) {
            T(littleEndian: $0.loadUnaligned(as: T.self))
        }
    }

    func store<T: FixedWidthInteger>(_ value: T, at address: UInt32) throws(Fault) {
        let size = MemoryLayout<T>.size
        try check(address, size)
        memory.withUnsafeMutableBufferPointer(offset: UInt(address), count: size) {
            $0.storeBytes(of: value.littleEndian, as: T.self)
        }
    }

    func withBytes<R>(at address: UInt32, count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        try check(address, count)
        if count == 0 { return try body(UnsafeMutableRawBufferPointer(start: nil, count: 0)) }
        return try memory.withUnsafeMutableBufferPointer(offset: UInt(address), count: count, body)
    }
}
