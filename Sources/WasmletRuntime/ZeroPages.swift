import Glibc

/// Gives back to the kernel the host pages of a buffer that hold only zeros: a guest's linear
/// memory after instantiation and after each reset, and the reset's snapshot of it.
///
/// Why: WasmKit allocates linear memory zero-filled, which makes every page of it resident. An
/// idle httpd.wasm (34 wasm pages, mostly its 1 MiB shadow stack and 1 MiB of client buffers,
/// all zero) cost 2.3 MiB of RSS. After MADV_DONTNEED a page of private anonymous memory (what
/// malloc hands out) reads back as zeros and costs nothing until it is written again, so the
/// guest sees exactly the same memory.
///
/// Only for memories of at least `worthwhileBytes`: on a small guest the page faults that follow
/// cost more than the pages are worth (hello, 128 KiB: create+run p50 went from 110 to 205 µs
/// when every memory was released at every reset).
enum ZeroPages {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    static let worthwhileBytes = 1 << 20

    /// Releases every whole host page inside `buffer` that is all zeros; returns how many.
    @discardableResult
    static func release(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count >= pageSize else { return 0 }
        let mask = pageSize - 1
        let start = (Int(bitPattern: base) + mask) & ~mask
        let end = (Int(bitPattern: base) + buffer.count) & ~mask
        var released = 0
        var run: Int?
        func flush(upTo limit: Int) {
            guard let first = run else { return }
            if madvise(UnsafeMutableRawPointer(bitPattern: first), limit - first, MADV_DONTNEED) == 0 {
                released += (limit - first) / pageSize
            }
            run = nil
        }
        var page = start
        while page < end {
            if isZero(page) {
                if run == nil { run = page }
            } else {
                flush(upTo: page)
            }
            page += pageSize
        }
        flush(upTo: end)
        return released
    }

    private static func isZero(_ address: Int) -> Bool {
        let words = UnsafePointer<UInt64>(bitPattern: address)!
        var index = 0
        while index < pageSize / 8 {
            if words[index] != 0 { return false }
            index += 1
        }
        return true
    }
}
