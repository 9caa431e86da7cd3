import CWasmletInterrupt
import Glibc
import WASI
import WasmKit
import WasmKitWASI

/// Thrown out of a host function when the guest has been asked to stop; it unwinds the wasm call.
struct GuestKilled: Error {}

/// The stable target of an instance's imports; each run puts its `WASIHost` here.
final class HostSlot {
    var host: WASIHost?
}

/// The `wasi_snapshot_preview1` imports of one guest run: WasmKit's own implementation, with the
/// calls that can block or that must respect read-only preopens wrapped by us.
///
/// Why wrap: WasmKit's WASI calls are synchronous and retry on EINTR, so a guest asleep in
/// `poll_oneoff` or blocked reading a FIFO could never be killed. Our versions wait with `ppoll`,
/// which the kill signal interrupts, and check the kill flag around every wait.
/// WasmKit also has no read-only preopens, so the calls that would modify a read-only tree are
/// refused here with EROFS, and descriptors opened beneath one inherit its read-only mark.
///
/// Everything here runs on the guest's own thread.
final class WASIHost {
    private let stock: [String: WASIHostFunction<Memory>]
    private let interrupter: GuestInterrupter
    private let counters: LiveCounters
    private let stdioFds: [Int32]
    private let stdioMayBlock: [Bool]
    /// Cleared once the guest closes or renumbers a stdio descriptor, after which the stock
    /// implementation owns that number.
    private var stdioIntact = [true, true, true]
    private var readOnlyFds: Set<UInt32>
    /// (count, bytes) of the args and environment string tables, for `WASIPointerChecks`.
    private let tableSizes: (args: (UInt64, UInt64), environment: (UInt64, UInt64))
    var memory: Memory?

    init(
        bridge: WASIBridgeToHost, interrupter: GuestInterrupter, stdio: borrowing GuestStdio, readOnlyPreopenFds: Set<UInt32>,
        args: [String], environment: [String: String], counters: LiveCounters
    ) {
        self.counters = counters
        self.tableSizes = (
            (UInt64(args.count), args.reduce(0) { $0 + UInt64($1.utf8.count) + 1 }),
            (UInt64(environment.count), environment.reduce(0) { $0 + UInt64($1.key.utf8.count + $1.value.utf8.count) + 2 })
        )
        self.stock = bridge.hostFunctions(capabilities: WASICapability.all)
        self.interrupter = interrupter
        self.stdioFds = [stdio.stdin, stdio.stdout, stdio.stderr]
        self.stdioMayBlock = [stdio.mayBlock.stdin, stdio.mayBlock.stdout, stdio.mayBlock.stderr]
        self.readOnlyFds = readOnlyPreopenFds
    }

    /// Defines every preview1 import once per instance. The functions call whatever host the
    /// slot holds, so a reused instance serves each run with that run's own bridge and stdio.
    static func link(into imports: inout Imports, store: Store, slot: HostSlot) {
        for (name, type) in ModuleValidator.wasiFunctionTypes {
            let body = wrapper(for: name) ?? { host, arguments in try host.callStock(name, arguments) }
            imports.define(
                module: ModuleValidator.wasiModuleName, name: name,
                Function(store: store, type: type) { [unowned slot] _, arguments in
                    guard let host = slot.host else { throw WASIError(description: "WASI call outside a run") }
                    return try body(host, arguments)
                })
        }
    }

    private typealias Body = (WASIHost, [Value]) throws -> [Value]

    private static func wrapper(for name: String) -> Body? {
        switch name {
        case "poll_oneoff": return { try $0.pollOneoff($1) }
        case "fd_read": return { try $0.fdRead($1) }
        case "fd_write": return { try $0.fdWrite($1) }
        case "fd_close": return { try $0.fdClose($1) }
        case "fd_renumber": return { try $0.fdRenumber($1) }
        case "path_open": return { try $0.pathOpen($1) }
        // Calls that modify the tree under their directory argument(s).
        case "path_create_directory", "path_remove_directory", "path_unlink_file", "path_filestat_set_times":
            return { try $0.refuseIfReadOnly(name, $1, fdArguments: [0]) }
        case "path_rename": return { try $0.refuseIfReadOnly(name, $1, fdArguments: [0, 3]) }
        case "path_symlink": return { try $0.refuseIfReadOnly(name, $1, fdArguments: [2]) }
        case "path_link": return { try $0.refuseIfReadOnly(name, $1, fdArguments: [4]) }
        // Calls that modify an open file: a read-only file descriptor is opened O_RDONLY, so the
        // kernel refuses writes, but not timestamps, size changes or allocation by its owner.
        case "fd_pwrite", "fd_allocate", "fd_filestat_set_size", "fd_filestat_set_times", "fd_fdstat_set_flags":
            return { try $0.refuseIfReadOnly(name, $1, fdArguments: [0]) }
        default: return nil
        }
    }

    private func requireMemory() throws -> Memory {
        guard let memory else { throw WASIError(description: "guest memory is not available") }
        return memory
    }

    /// Calls WasmKit's implementation once every pointer it will touch is known to be in bounds.
    private func callStock(_ name: String, _ arguments: [Value]) throws -> [Value] {
        guard let function = stock[name] else { return errno(.notcapable) }
        let memory = try requireMemory()
        guard WASIPointerChecks.check(name, arguments, memory: memory, tableSizes: tableSizes) else { return errno(.fault) }
        return try function.implementation(memory, arguments)
    }

    private func errno(_ value: WASIErrno) -> [Value] { [.i32(value.rawValue)] }

    private func checkKilled() throws {
        if interrupter.isKillRequested { throw GuestKilled() }
    }

    // MARK: Read-only preopens

    private func refuseIfReadOnly(_ name: String, _ arguments: [Value], fdArguments: [Int]) throws -> [Value] {
        for index in fdArguments {
            if case .i32(let fd) = arguments[index], readOnlyFds.contains(fd) { return errno(.rofs) }
        }
        return try callStock(name, arguments)
    }

    private static let writeRights: UInt64 = (1 << 6) | (1 << 8) | (1 << 22)  // FD_WRITE, FD_ALLOCATE, FD_FILESTAT_SET_SIZE
    private static let modifyingOpenFlags: UInt32 = 1 | 4 | 8  // CREAT, EXCL, TRUNC
    private static let appendFdFlag: UInt32 = 1

    private func pathOpen(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let dirFd) = arguments[0], case .i32(let oflags) = arguments[4],
            case .i64(let rightsBase) = arguments[5], case .i32(let fdflags) = arguments[7],
            case .i32(let resultPointer) = arguments[8]
        else { return errno(.inval) }
        let readOnly = readOnlyFds.contains(dirFd)
        if readOnly && (oflags & Self.modifyingOpenFlags != 0 || rightsBase & Self.writeRights != 0 || fdflags & Self.appendFdFlag != 0) {
            return errno(.rofs)
        }
        let result = try callStock("path_open", arguments)
        if readOnly, result.first == .i32(0), let memory,
            let opened = try? GuestMemoryAccess(memory: memory).load(resultPointer, as: UInt32.self)
        {
            readOnlyFds.insert(opened)
        }
        return result
    }

    private func fdClose(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let fd) = arguments[0] else { return errno(.inval) }
        let result = try callStock("fd_close", arguments)
        if result.first == .i32(0) {
            if fd < 3 { stdioIntact[Int(fd)] = false }
            readOnlyFds.remove(fd)
        }
        return result
    }

    private func fdRenumber(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let from) = arguments[0], case .i32(let to) = arguments[1] else { return errno(.inval) }
        let result = try callStock("fd_renumber", arguments)
        if result.first == .i32(0) {
            if from < 3 { stdioIntact[Int(from)] = false }
            if to < 3 { stdioIntact[Int(to)] = false }
            if readOnlyFds.remove(from) != nil { readOnlyFds.insert(to) } else { readOnlyFds.remove(to) }
        }
        return result
    }

    // MARK: Kill-aware waits

    /// Waits until `fd` is ready for `events` or the guest is killed. EINTR (the kill signal, or
    /// any other) just re-checks the kill flag and waits again. Counted as blocked only when
    /// the descriptor is not ready at once.
    private func waitReady(_ fd: Int32, events: Int16) throws {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        try checkKilled()
        let first = poll(&entry, 1, 0)
        if first > 0 || (first < 0 && Glibc.errno != EINTR) { return }
        try counters.whileBlocked {
            while true {
                try checkKilled()
                let rc = poll(&entry, 1, 1000)
                if rc > 0 { return }
                if rc < 0 && Glibc.errno != EINTR { return }  // let the real call report the error
            }
        }
    }

    private func blockingStdio(_ fd: UInt32) -> Int32? {
        guard fd < 3, stdioIntact[Int(fd)], stdioMayBlock[Int(fd)] else { return nil }
        return stdioFds[Int(fd)]
    }

    private func fdRead(_ arguments: [Value]) throws -> [Value] {
        if case .i32(let fd) = arguments[0], let host = blockingStdio(fd) {
            try waitReady(host, events: Int16(POLLIN))
        }
        return try callStock("fd_read", arguments)
    }

    /// Writes to a pipe-like stdout/stderr ourselves, in chunks of at most PIPE_BUF after POLLOUT,
    /// so no single write can block once the reader stops reading.
    private func fdWrite(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let fd) = arguments[0], fd == 1 || fd == 2, let host = blockingStdio(fd) else {
            return try callStock("fd_write", arguments)
        }
        guard case .i32(let iovs) = arguments[1], case .i32(let count) = arguments[2], case .i32(let written) = arguments[3]
        else { return errno(.inval) }
        let access = try GuestMemoryAccess(memory: requireMemory())
        guard count <= 1024 else { return errno(.inval) }
        var total: UInt32 = 0
        do {
            for index in 0..<count {
                let base = iovs &+ index &* 8
                let pointer = try access.load(base, as: UInt32.self)
                let length = try access.load(base &+ 4, as: UInt32.self)
                var offset: UInt32 = 0
                while offset < length {
                    try waitReady(host, events: Int16(POLLOUT))
                    let chunk = Int(min(length - offset, UInt32(PIPE_BUF)))
                    let rc = try access.withBytes(at: pointer &+ offset, count: chunk) { Glibc.write(host, $0.baseAddress, chunk) }
                    if rc < 0 {
                        let error = Glibc.errno
                        if error == EINTR || error == EAGAIN { continue }
                        if total > 0 { break }
                        return errno(WASIErrno(posix: error))
                    }
                    offset += UInt32(rc)
                    total += UInt32(rc)
                }
            }
            try access.store(total, at: written)
        } catch is GuestMemoryAccess.Fault {
            return errno(.fault)
        }
        return errno(.success)
    }

    // MARK: poll_oneoff

    private struct Subscription {
        var userData: UInt64
        var tag: UInt8
        var clockDeadline: UInt64?  // CLOCK_MONOTONIC ns
        var fd: UInt32
    }

    private static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    private static func realtimeNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Handles clock subscriptions (sleep) and waits on pipe-like stdio ourselves; anything else
    /// (other descriptors, CPU-time clocks) goes to WasmKit, which never blocks on those.
    private func pollOneoff(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let input) = arguments[0], case .i32(let output) = arguments[1],
            case .i32(let count) = arguments[2], case .i32(let eventCountPointer) = arguments[3]
        else { return errno(.inval) }
        guard count > 0 else { return errno(.inval) }
        guard count <= 4096 else { return try callStock("poll_oneoff", arguments) }
        let access = try GuestMemoryAccess(memory: requireMemory())
        var subscriptions: [Subscription] = []
        do {
            let now = Self.monotonicNow()
            for index in 0..<count {
                let base = input &+ index &* 48
                var subscription = Subscription(
                    userData: try access.load(base, as: UInt64.self), tag: try access.load(base &+ 8, as: UInt8.self),
                    clockDeadline: nil, fd: 0)
                switch subscription.tag {
                case 0:  // clock
                    let clock = try access.load(base &+ 16, as: UInt32.self)
                    let timeout = try access.load(base &+ 24, as: UInt64.self)
                    let absolute = try access.load(base &+ 40, as: UInt16.self) & 1 != 0
                    switch (clock, absolute) {
                    case (0, true):
                        let real = Self.realtimeNow()
                        subscription.clockDeadline = timeout > real ? now &+ (timeout - real) : now
                    case (1, true): subscription.clockDeadline = timeout
                    case (0, false), (1, false):
                        let (sum, overflow) = now.addingReportingOverflow(timeout)
                        subscription.clockDeadline = overflow ? .max : sum
                    default: return try callStock("poll_oneoff", arguments)
                    }
                case 1, 2:  // fd_read, fd_write
                    subscription.fd = try access.load(base &+ 16, as: UInt32.self)
                    guard blockingStdio(subscription.fd) != nil else { return try callStock("poll_oneoff", arguments) }
                default:
                    return errno(.inval)
                }
                subscriptions.append(subscription)
            }
        } catch is GuestMemoryAccess.Fault {
            return errno(.fault)
        }
        let fdSubscriptions = subscriptions.indices.filter { subscriptions[$0].tag != 0 }
        var pollEntries = fdSubscriptions.map { index in
            let subscription = subscriptions[index]
            return pollfd(fd: stdioFds[Int(subscription.fd)], events: Int16(subscription.tag == 1 ? POLLIN : POLLOUT), revents: 0)
        }
        let deadline = subscriptions.compactMap(\.clockDeadline).min()
        return try counters.whileBlocked {
            try waitForSubscriptions(subscriptions, fdSubscriptions, &pollEntries, deadline, access, output, eventCountPointer)
        }
    }

    /// poll_oneoff's wait, counted as blocked: until a subscription fires or the guest is killed.
    private func waitForSubscriptions(
        _ subscriptions: [Subscription], _ fdSubscriptions: [Int], _ pollEntries: inout [pollfd], _ deadline: UInt64?,
        _ access: GuestMemoryAccess, _ output: UInt32, _ eventCountPointer: UInt32
    ) throws -> [Value] {
        while true {
            try checkKilled()
            var timeout: timespec? = nil
            if let deadline {
                let now = Self.monotonicNow()
                let remaining = deadline > now ? deadline - now : 0
                timeout = timespec(tv_sec: Int(min(remaining / 1_000_000_000, 1 << 40)), tv_nsec: Int(remaining % 1_000_000_000))
            }
            let rc: Int32 = pollEntries.withUnsafeMutableBufferPointer { entries in
                if var timeout { return wasmlet_ppoll(entries.baseAddress, UInt(entries.count), &timeout) }
                return wasmlet_ppoll(entries.baseAddress, UInt(entries.count), nil)
            }
            if rc < 0 && Glibc.errno == EINTR { continue }
            if rc < 0 { return errno(WASIErrno(posix: Glibc.errno)) }
            let now = Self.monotonicNow()
            var ready = 0
            do {
                for (position, index) in fdSubscriptions.enumerated() where pollEntries[position].revents != 0 {
                    let subscription = subscriptions[index]
                    let hangup = pollEntries[position].revents & Int16(POLLHUP) != 0
                    var available: Int32 = 0
                    if subscription.tag == 1 { _ = ioctl(pollEntries[position].fd, UInt(FIONREAD), &available) }
                    try writeEvent(access, output, ready, subscription, nbytes: UInt64(max(0, available)), hangup: hangup)
                    ready += 1
                }
                for subscription in subscriptions where subscription.tag == 0 && subscription.clockDeadline! <= now {
                    try writeEvent(access, output, ready, subscription, nbytes: 0, hangup: false)
                    ready += 1
                }
                if ready > 0 {
                    try access.store(UInt32(ready), at: eventCountPointer)
                    return errno(.success)
                }
            } catch {
                return errno(.fault)
            }
        }
    }

    private func writeEvent(_ access: GuestMemoryAccess, _ output: UInt32, _ position: Int, _ subscription: Subscription, nbytes: UInt64, hangup: Bool) throws(GuestMemoryAccess.Fault) {
        let base = output &+ UInt32(position) &* 32
        try access.store(subscription.userData, at: base)
        try access.store(UInt16(0), at: base &+ 8)
        try access.store(subscription.tag, at: base &+ 10)
        try access.store(nbytes, at: base &+ 16)
        try access.store(UInt16(hangup ? 1 : 0), at: base &+ 24)
    }
}
