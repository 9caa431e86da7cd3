import WasmKit

/// Bounds checks for every pointer a preview1 call hands to WasmKit's WASI implementation.
///
/// WasmKit's WASI reaches guest memory through `Memory.withUnsafe...BufferPointer`, which
/// *preconditions* on bounds: one `fd_write` with an iovec pointing past the end of memory would
/// abort the whole daemon. So before any call is delegated, each pointer region it will touch is
/// checked here, and a bad one is answered with EFAULT as a kernel would.
enum WASIPointerChecks {
    enum Region {
        /// `pointer` argument, fixed byte size.
        case fixed(pointer: Int, size: UInt64)
        /// `pointer` argument with its byte length in argument `length`.
        case bytes(pointer: Int, length: Int)
        /// An array of `count` (argument) elements of `size` bytes.
        case array(pointer: Int, count: Int, size: UInt64)
        /// An iovec/ciovec array: the array itself and every buffer it names.
        case iovecs(pointer: Int, count: Int)
        /// args_get / environ_get: `count` pointers, then `bufferBytes` bytes of strings.
        case stringTable(pointers: Int, buffer: Int, kind: StringTableKind)
    }

    enum StringTableKind { case args, environment }

    /// Most iovecs one call may pass (Linux's IOV_MAX).
    static let maxIovecs: UInt64 = 1024

    static let table: [String: [Region]] = [
        "args_get": [.stringTable(pointers: 0, buffer: 1, kind: .args)],
        "args_sizes_get": [.fixed(pointer: 0, size: 4), .fixed(pointer: 1, size: 4)],
        "environ_get": [.stringTable(pointers: 0, buffer: 1, kind: .environment)],
        "environ_sizes_get": [.fixed(pointer: 0, size: 4), .fixed(pointer: 1, size: 4)],
        "clock_res_get": [.fixed(pointer: 1, size: 8)],
        "clock_time_get": [.fixed(pointer: 2, size: 8)],
        "fd_fdstat_get": [.fixed(pointer: 1, size: 24)],
        "fd_filestat_get": [.fixed(pointer: 1, size: 64)],
        "fd_pread": [.iovecs(pointer: 1, count: 2), .fixed(pointer: 4, size: 4)],
        "fd_prestat_get": [.fixed(pointer: 1, size: 8)],
        "fd_prestat_dir_name": [.bytes(pointer: 1, length: 2)],
        "fd_pwrite": [.iovecs(pointer: 1, count: 2), .fixed(pointer: 4, size: 4)],
        "fd_read": [.iovecs(pointer: 1, count: 2), .fixed(pointer: 3, size: 4)],
        "fd_readdir": [.bytes(pointer: 1, length: 2), .fixed(pointer: 4, size: 4)],
        "fd_seek": [.fixed(pointer: 3, size: 8)],
        "fd_tell": [.fixed(pointer: 1, size: 8)],
        "fd_write": [.iovecs(pointer: 1, count: 2), .fixed(pointer: 3, size: 4)],
        "path_create_directory": [.bytes(pointer: 1, length: 2)],
        "path_filestat_get": [.bytes(pointer: 2, length: 3), .fixed(pointer: 4, size: 64)],
        "path_filestat_set_times": [.bytes(pointer: 2, length: 3)],
        "path_link": [.bytes(pointer: 2, length: 3), .bytes(pointer: 5, length: 6)],
        "path_open": [.bytes(pointer: 2, length: 3), .fixed(pointer: 8, size: 4)],
        "path_readlink": [.bytes(pointer: 1, length: 2), .bytes(pointer: 3, length: 4), .fixed(pointer: 5, size: 4)],
        "path_remove_directory": [.bytes(pointer: 1, length: 2)],
        "path_rename": [.bytes(pointer: 1, length: 2), .bytes(pointer: 4, length: 5)],
        "path_symlink": [.bytes(pointer: 0, length: 1), .bytes(pointer: 3, length: 4)],
        "path_unlink_file": [.bytes(pointer: 1, length: 2)],
        "poll_oneoff": [.array(pointer: 0, count: 2, size: 48), .array(pointer: 1, count: 2, size: 32), .fixed(pointer: 3, size: 4)],
        "random_get": [.bytes(pointer: 0, length: 1)],
        "sock_accept": [.fixed(pointer: 2, size: 4)],
        "sock_recv": [.iovecs(pointer: 1, count: 2), .fixed(pointer: 4, size: 4), .fixed(pointer: 5, size: 2)],
        "sock_send": [.iovecs(pointer: 1, count: 2), .fixed(pointer: 4, size: 4)],
    ]

    /// Whether every region `name` would touch lies inside `memory`. `tableSizes` gives the
    /// (count, bytes) of the args and environment string tables.
    static func check(
        _ name: String, _ arguments: [Value], memory: Memory,
        tableSizes: (args: (UInt64, UInt64), environment: (UInt64, UInt64))
    ) -> Bool {
        guard let regions = table[name] else { return true }
        let size = UInt64(memory.byteCount)
        func u32(_ index: Int) -> UInt64? {
            guard index < arguments.count, case .i32(let value) = arguments[index] else { return nil }
            return UInt64(value)
        }
        func inside(_ start: UInt64, _ length: UInt64) -> Bool {
            let (end, overflow) = start.addingReportingOverflow(length)
            return !overflow && end <= size
        }
        for region in regions {
            switch region {
            case .fixed(let pointer, let bytes):
                guard let start = u32(pointer), inside(start, bytes) else { return false }
            case .bytes(let pointer, let length):
                guard let start = u32(pointer), let count = u32(length), inside(start, count) else { return false }
            case .array(let pointer, let count, let element):
                guard let start = u32(pointer), let count = u32(count), inside(start, count * element) else { return false }
            case .iovecs(let pointer, let count):
                guard let start = u32(pointer), let count = u32(count), count <= maxIovecs, inside(start, count * 8) else { return false }
                let access = GuestMemoryAccess(memory: memory)
                for index in 0..<count {
                    let entry = UInt32(start + index * 8)
                    guard let base = try? access.load(entry, as: UInt32.self),
                        let length = try? access.load(entry + 4, as: UInt32.self),
                        inside(UInt64(base), UInt64(length))
                    else { return false }
                }
            case .stringTable(let pointers, let buffer, let kind):
                let (count, bytes) = kind == .args ? tableSizes.args : tableSizes.environment
                guard let table = u32(pointers), let strings = u32(buffer), inside(table, count * 4), inside(strings, bytes)
                else { return false }
            }
        }
        return true
    }
}
