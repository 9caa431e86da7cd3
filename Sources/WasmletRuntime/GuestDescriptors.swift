import Glibc

/// A socket as the guest sees it: a pre-opened listener or a connection it accepted.
///
/// Host descriptors are always non-blocking; whether the guest asked for blocking calls is
/// `nonblocking`, and a blocking call waits with a kill-aware `poll` (see `WASIHost`).
final class GuestSocket {
    enum Kind { case listener(ListeningSocket), connection }

    let fd: Int32
    let kind: Kind
    var nonblocking: Bool
    private(set) var closed = false

    init(listener: ListeningSocket) {
        fd = listener.fd
        kind = .listener(listener)
        nonblocking = false
    }

    init(connection fd: Int32, nonblocking: Bool) {
        self.fd = fd
        kind = .connection
        self.nonblocking = nonblocking
    }

    var isListener: Bool { if case .listener = kind { true } else { false } }

    /// A connection's descriptor is closed; a listener stops listening (its descriptor is
    /// closed with the last reference, see `ListeningSocket`).
    func close() {
        guard !closed else { return }
        closed = true
        switch kind {
        case .listener(let socket): socket.stopListening()
        case .connection: _ = Glibc.close(fd)
        }
    }

    deinit { close() }
}

/// What a guest descriptor number stands for.
enum GuestDescriptor {
    /// A descriptor of WasmKit's WASI implementation, under WasmKit's own number.
    case wasi(UInt32)
    case socket(GuestSocket)
}

/// The guest's descriptor numbers. WasmKit's WASI keeps its own table (stdio, preopens and
/// whatever `path_open` returns), which cannot hold sockets, so the guest's numbers are ours:
/// each maps to WasmKit's number or to one of our sockets. Numbers 0-2 and the preopens keep
/// WasmKit's numbers (3, 4, ...); the listeners follow the last preopen; anything opened later
/// gets the lowest free number, as POSIX does.
struct GuestDescriptorTable {
    private var entries: [UInt32: GuestDescriptor] = [:]
    /// Freed numbers below `nextUnused` (a min-heap).
    private var free: [UInt32] = []
    private var nextUnused: UInt32

    init(preopenCount: Int, listeners: [ListeningSocket]) {
        for fd in 0..<UInt32(3 + preopenCount) { entries[fd] = .wasi(fd) }
        var next = UInt32(3 + preopenCount)
        for listener in listeners {
            entries[next] = .socket(GuestSocket(listener: listener))
            next += 1
        }
        nextUnused = next
    }

    subscript(fd: UInt32) -> GuestDescriptor? { entries[fd] }

    var sockets: [GuestSocket] {
        entries.values.compactMap { if case .socket(let socket) = $0 { socket } else { nil } }
    }

    mutating func insert(_ descriptor: GuestDescriptor) -> UInt32 {
        let fd: UInt32
        if !free.isEmpty {
            fd = popFree()
        } else {
            fd = nextUnused
            nextUnused += 1
        }
        entries[fd] = descriptor
        return fd
    }

    /// Puts `descriptor` at `fd`, which must be in use (fd_renumber's target).
    mutating func replace(_ fd: UInt32, with descriptor: GuestDescriptor) { entries[fd] = descriptor }

    @discardableResult
    mutating func remove(_ fd: UInt32) -> GuestDescriptor? {
        guard let removed = entries.removeValue(forKey: fd) else { return nil }
        pushFree(fd)
        return removed
    }

    private mutating func pushFree(_ fd: UInt32) {
        free.append(fd)
        var child = free.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard free[child] < free[parent] else { break }
            free.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popFree() -> UInt32 {
        let top = free[0]
        let last = free.removeLast()
        if !free.isEmpty {
            free[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < free.count && free[left] < free[smallest] { smallest = left }
                if right < free.count && free[right] < free[smallest] { smallest = right }
                guard smallest != parent else { break }
                free.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}
