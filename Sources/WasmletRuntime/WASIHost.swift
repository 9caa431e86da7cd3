import CWasmletInterrupt
import Glibc
import WASI
import WasmKit
import WasmKitWASI

/// Thrown out of a host function when the guest has been asked to stop; it unwinds the wasm call.
struct GuestKilled: Error {}

/// Thrown out of a host function when a run on its caller's thread (a slice, see `ServiceRuns`)
/// would have to block or hold back too much: the run is thrown away and made again on a guest
/// thread of its own.
struct OutgrewSlice: Error {}

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
    private var stock: StockWASIFunctions
    let interrupter: GuestInterrupter
    let counters: LiveCounters
    private let stdioFds: [Int32]
    private let stdioMayBlock: [Bool]
    /// Cleared once the guest closes or renumbers a stdio descriptor, after which the stock
    /// implementation owns that number.
    private var stdioIntact = [true, true, true]
    private var readOnlyFds: Set<UInt32>
    /// Host directories of the preopens, by WasmKit's descriptor number less 3.
    private let preopenHostPaths: [String]
    /// (count, bytes) of the args and environment string tables, for `WASIPointerChecks`.
    let tableSizes: (args: (UInt64, UInt64), environment: (UInt64, UInt64))
    var memory: Memory?
    /// The guest's descriptor numbers: WasmKit's descriptors and our sockets (WASISockets.swift).
    var descriptors: GuestDescriptorTable
    /// Connections open now, and the most the guest may hold.
    var openConnections = 0
    let maxConnections: Int
    /// A per-request run's in-memory stdio (the HTTP trigger's), in place of descriptors.
    var requestStdio: RequestStdio?
    /// The run is a slice on its caller's thread (an event loop's): it must never wait.
    var onCallerThread = false

    init(
        bridge: WASIBridgeToHost, interrupter: GuestInterrupter, stdio: borrowing GuestStdio, readOnlyPreopenFds: Set<UInt32>,
        args: [String], environment: [String: String], counters: LiveCounters,
        firstListenerFd: UInt32 = 3, listeners: [ListeningSocket] = [], maxConnections: UInt32 = 1024, preopenCount: Int = 0,
        preopenHostPaths: [String] = []
    ) {
        self.preopenHostPaths = preopenHostPaths
        self.descriptors = GuestDescriptorTable(preopenCount: preopenCount, listeners: listeners)
        self.maxConnections = Int(maxConnections)
        self.counters = counters
        self.tableSizes = (
            (UInt64(args.count), args.reduce(0) { $0 + UInt64($1.utf8.count) + 1 }),
            (UInt64(environment.count), environment.reduce(0) { $0 + UInt64($1.key.utf8.count + $1.value.utf8.count) + 2 })
        )
        self.stock = StockWASIFunctions(bridge: bridge)
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
        case "fd_read": return { try $0.socket(for: $1) != nil ? $0.sockRecv($1, fdRead: true) : $0.fdRead($1) }
        case "fd_write": return { try $0.socket(for: $1) != nil ? $0.sockSend($1, fdWrite: true) : $0.fdWrite($1) }
        case "fd_close": return { try $0.fdClose($1) }
        case "fd_renumber": return { try $0.fdRenumber($1) }
        case "path_open": return { try $0.pathOpen($1) }
        case "sock_accept": return { try $0.sockAccept($1) }
        case "sock_recv": return { try $0.sockRecv($1, fdRead: false) }
        case "sock_send": return { try $0.sockSend($1, fdWrite: false) }
        case "sock_shutdown": return { try $0.sockShutdown($1) }
        case "fd_fdstat_get": return { try $0.socket(for: $1) != nil ? $0.socketFdstatGet($1) : $0.fdFdstatGet($1) }
        case "fd_filestat_get": return { try $0.socket(for: $1) != nil ? $0.socketFilestatGet($1) : $0.callStock(name, $1) }
        case "fd_fdstat_set_flags":
            return { try $0.socket(for: $1) != nil ? $0.socketSetFlags($1) : $0.refuseIfReadOnly(name, $1, fdArguments: [0]) }
        // Calls that modify the tree under their directory argument(s).
        case "path_create_directory", "path_remove_directory", "path_unlink_file", "path_filestat_set_times":
            return { try $0.refuseIfReadOnly(name, $1, fdArguments: [0]) }
        case "path_rename": return { try $0.refuseIfReadOnly(name, $1, fdArguments: [0, 3]) }
        case "path_symlink": return { try $0.refuseIfReadOnly(name, $1, fdArguments: [2]) }
        case "path_link": return { try $0.refuseIfReadOnly(name, $1, fdArguments: [4]) }
        // Calls that modify an open file: a read-only file descriptor is opened O_RDONLY, so the
        // kernel refuses writes, but not timestamps, size changes or allocation by its owner.
        case "fd_pwrite", "fd_allocate", "fd_filestat_set_size", "fd_filestat_set_times":
            return { try $0.refuseIfReadOnly(name, $1, fdArguments: [0]) }
        default: return nil
        }
    }

    func requireMemory() throws -> Memory {
        guard let memory else { throw WASIError(description: "guest memory is not available") }
        return memory
    }

    /// Which arguments of each call are descriptors (poll_oneoff's are in its subscriptions).
    static let descriptorArguments: [String: [Int]] = [
        "fd_advise": [0], "fd_allocate": [0], "fd_close": [0], "fd_datasync": [0], "fd_fdstat_get": [0],
        "fd_fdstat_set_flags": [0], "fd_fdstat_set_rights": [0], "fd_filestat_get": [0], "fd_filestat_set_size": [0],
        "fd_filestat_set_times": [0], "fd_pread": [0], "fd_prestat_get": [0], "fd_prestat_dir_name": [0], "fd_pwrite": [0],
        "fd_read": [0], "fd_readdir": [0], "fd_renumber": [0, 1], "fd_seek": [0], "fd_sync": [0], "fd_tell": [0],
        "fd_write": [0], "path_create_directory": [0], "path_filestat_get": [0], "path_filestat_set_times": [0],
        "path_link": [0, 4], "path_open": [0], "path_readlink": [0], "path_remove_directory": [0], "path_rename": [0, 3],
        "path_symlink": [2], "path_unlink_file": [0], "sock_accept": [0], "sock_recv": [0], "sock_send": [0],
        "sock_shutdown": [0],
    ]

    /// What a call that WasmKit would serve answers when a descriptor argument is a socket.
    private static func socketErrno(_ name: String) -> WASIErrno {
        switch name {
        case "fd_seek", "fd_tell", "fd_pread", "fd_pwrite", "fd_advise": return .spipe
        case "fd_prestat_get", "fd_prestat_dir_name": return .badf
        case "fd_readdir": return .notdir
        case "fd_fdstat_set_rights": return .notsup
        default: return name.hasPrefix("path_") ? .notdir : .inval
        }
    }

    /// The socket behind a call's first argument, if it is one.
    func socket(for arguments: [Value]) -> GuestSocket? {
        guard case .i32(let fd) = arguments.first, case .socket(let socket) = descriptors[fd] else { return nil }
        return socket
    }

    /// Calls WasmKit's implementation once every pointer it will touch is known to be in bounds,
    /// with the guest's descriptor numbers turned into WasmKit's (and a new one back).
    func callStock(_ name: String, _ arguments: [Value]) throws -> [Value] {
        let memory = try requireMemory()
        guard WASIPointerChecks.check(name, arguments, memory: memory, tableSizes: tableSizes) else { return errno(.fault) }
        var translated = arguments
        for index in Self.descriptorArguments[name] ?? [] {
            guard index < translated.count, case .i32(let fd) = translated[index] else { return errno(.inval) }
            switch descriptors[fd] {
            case .wasi(let wasiFd): translated[index] = .i32(wasiFd)
            case .socket: return errno(Self.socketErrno(name))
            case nil: return errno(.badf)
            }
        }
        // The descriptor exists and is not a socket.
        if name.hasPrefix("sock_") { return errno(.notsock) }
        // A preview1 name no capability serves is one WasmKit stubs with ENOSYS.
        guard let function = stock.function(name) else { return errno(.nosys) }
        let result = try function.implementation(memory, translated)
        if name == "path_open", result.first == .i32(0), case .i32(let resultPointer) = arguments[8] {
            let access = GuestMemoryAccess(memory: memory)
            guard let opened = try? access.load(resultPointer, as: UInt32.self) else { return errno(.fault) }
            let fd = descriptors.insert(.wasi(opened))
            do { try access.store(fd, at: resultPointer) } catch { return errno(.fault) }
        }
        return result
    }

    func errno(_ value: WASIErrno) -> [Value] { [.i32(value.rawValue)] }

    func checkKilled() throws {
        if interrupter.isKillRequested { throw GuestKilled() }
    }

    // MARK: Read-only preopens

    func refuseIfReadOnly(_ name: String, _ arguments: [Value], fdArguments: [Int]) throws -> [Value] {
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
        let result: [Value]
        if let fifo = fifoTarget(dirFd: dirFd, arguments) {
            result = try interrupter.whileOpeningFIFO(fifo) { try callStock("path_open", arguments) }
            // A kill is what let the open return: the guest goes no further (the descriptor it
            // got is closed with the run's bridge).
            if interrupter.isKillRequested { throw GuestKilled() }
        } else {
            result = try callStock("path_open", arguments)
        }
        if readOnly, result.first == .i32(0), let memory,
            let opened = try? GuestMemoryAccess(memory: memory).load(resultPointer, as: UInt32.self)
        {
            readOnlyFds.insert(opened)
        }
        return result
    }

    /// The host path of what a path_open names, when it is a FIFO right inside one of the
    /// preopens (no `..`, no symlink leading out): its open may block (see `whileOpeningFIFO`).
    private func fifoTarget(dirFd: UInt32, _ arguments: [Value]) -> String? {
        guard case .wasi(let wasiFd) = descriptors[dirFd], wasiFd >= 3, Int(wasiFd) - 3 < preopenHostPaths.count,
            case .i32(let pathPointer) = arguments[2], case .i32(let pathLength) = arguments[3], pathLength <= 4096,
            let memory
        else { return nil }
        guard
            let relative = try? GuestMemoryAccess(memory: memory).withBytes(at: pathPointer, count: Int(pathLength), {
                String(decoding: UnsafeRawBufferPointer($0), as: UTF8.self)
            }),
            !relative.hasPrefix("/"), !relative.split(separator: "/").contains("..")
        else { return nil }
        let directory = preopenHostPaths[Int(wasiFd) - 3]
        guard let root = Self.realPath(directory), let target = Self.realPath(directory + "/" + relative),
            target.hasPrefix(root == "/" ? "/" : root + "/")
        else { return nil }
        var info = stat()
        guard stat(target, &info) == 0, info.st_mode & S_IFMT == S_IFIFO else { return nil }
        return target
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private func fdClose(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let fd) = arguments[0] else { return errno(.inval) }
        if case .socket(let socket) = descriptors[fd] {
            closeSocket(socket)
            descriptors.remove(fd)
            if fd < 3 { stdioIntact[Int(fd)] = false }
            return errno(.success)
        }
        let result = try callStock("fd_close", arguments)
        if result.first == .i32(0) {
            descriptors.remove(fd)
            if fd < 3 { stdioIntact[Int(fd)] = false }
            readOnlyFds.remove(fd)
        }
        return result
    }

    /// Renumbering is ours (the numbers are): the target's resource is closed and the source
    /// takes its number.
    private func fdRenumber(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let from) = arguments[0], case .i32(let to) = arguments[1] else { return errno(.inval) }
        guard let source = descriptors[from], let target = descriptors[to] else { return errno(.badf) }
        guard from != to else { return errno(.success) }
        switch target {
        case .socket(let socket): closeSocket(socket)
        case .wasi(let wasiFd):
            // Stock fd_close with WasmKit's own number; an error closing the target does not
            // stop the renumbering, as with dup2.
            if let function = stock.function("fd_close"), let memory { _ = try function.implementation(memory, [.i32(wasiFd)]) }
        }
        descriptors.replace(to, with: source)
        descriptors.remove(from)
        if from < 3 { stdioIntact[Int(from)] = false }
        if to < 3 { stdioIntact[Int(to)] = false }
        if readOnlyFds.remove(from) != nil { readOnlyFds.insert(to) } else { readOnlyFds.remove(to) }
        return errno(.success)
    }

    // MARK: Kill-aware waits

    /// Waits until `fd` is ready for `events` or the guest is killed. EINTR (the kill signal, or
    /// any other) just re-checks the kill flag and waits again. Counted as blocked only when
    /// the descriptor is not ready at once.
    /// A wait in a host call: counted for the stats (all guests) and for the demotion check
    /// (this run), which keeps the priority of a guest that mostly waits.
    func whileBlocked<T>(_ body: () throws -> T) rethrows -> T {
        try interrupter.whileBlocked { try counters.whileBlocked(body) }
    }

    @discardableResult
    func waitReady(_ fd: Int32, events: Int16) throws -> Int16 {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        try checkKilled()
        let first = poll(&entry, 1, 0)
        if first > 0 || (first < 0 && Glibc.errno != EINTR) { return entry.revents }
        return try whileBlocked {
            while true {
                try checkKilled()
                let rc = poll(&entry, 1, 1000)
                if rc > 0 { return entry.revents }
                if rc < 0 && Glibc.errno != EINTR { return 0 }  // let the real call report the error
            }
        }
    }

    private func blockingStdio(_ fd: UInt32) -> Int32? {
        guard fd < 3, stdioIntact[Int(fd)], stdioMayBlock[Int(fd)] else { return nil }
        return stdioFds[Int(fd)]
    }

    /// The request's stdio, when the call is on a stdio number the guest has not closed.
    private func requestStream(for arguments: [Value]) -> (RequestStdio, UInt32)? {
        guard let requestStdio, case .i32(let fd) = arguments[0], fd < 3, stdioIntact[Int(fd)] else { return nil }
        return (requestStdio, fd)
    }

    /// A request's stdio is a stream in memory, and says so as a pipe would: filetype unknown,
    /// no seek, so the guest's libc does not take it for a terminal (which would line-buffer
    /// stdout) and no table of WasmKit's is built for the call (see `StockWASIFunctions`).
    private func fdFdstatGet(_ arguments: [Value]) throws -> [Value] {
        guard let (_, fd) = requestStream(for: arguments) else { return try callStock("fd_fdstat_get", arguments) }
        let rights = (fd == 0 ? Self.rightFdRead : Self.rightFdWrite) | Self.rightPollFdReadwrite
        return try storeFdstat(arguments, fileType: 0, flags: 0, rightsBase: rights, rightsInheriting: 0)
    }

    private static let rightFdRead: UInt64 = 1 << 1
    private static let rightFdWrite: UInt64 = 1 << 6
    private static let rightPollFdReadwrite: UInt64 = 1 << 27

    /// Writes fd_fdstat_get's answer (a 24-byte fdstat) at the pointer in its second argument.
    func storeFdstat(_ arguments: [Value], fileType: UInt8, flags: UInt16, rightsBase: UInt64, rightsInheriting: UInt64) throws
        -> [Value]
    {
        let memory = try requireMemory()
        guard WASIPointerChecks.check("fd_fdstat_get", arguments, memory: memory, tableSizes: tableSizes),
            arguments.count > 1, case .i32(let pointer) = arguments[1]
        else { return errno(.fault) }
        let access = GuestMemoryAccess(memory: memory)
        do {
            try access.store(fileType, at: pointer)
            try access.store(UInt8(0), at: pointer &+ 1)
            try access.store(flags, at: pointer &+ 2)
            try access.store(UInt32(0), at: pointer &+ 4)
            try access.store(rightsBase, at: pointer &+ 8)
            try access.store(rightsInheriting, at: pointer &+ 16)
        } catch {
            return errno(.fault)
        }
        return errno(.success)
    }

    private func fdRead(_ arguments: [Value]) throws -> [Value] {
        if let (io, fd) = requestStream(for: arguments), fd == 0 {
            guard case .i32(let iovs) = arguments[1], case .i32(let count) = arguments[2], case .i32(let read) = arguments[3]
            else { return errno(.inval) }
            guard count <= 1024 else { return errno(.inval) }
            do {
                let access = GuestMemoryAccess(memory: try requireMemory())
                try access.store(try io.read(access, iovs: iovs, count: count), at: read)
            } catch is GuestMemoryAccess.Fault {
                return errno(.fault)
            }
            return errno(.success)
        }
        if case .i32(let fd) = arguments[0], let host = blockingStdio(fd) {
            try waitReady(host, events: Int16(POLLIN))
        }
        return try callStock("fd_read", arguments)
    }

    /// Writes to a pipe-like stdout/stderr ourselves, in chunks of at most PIPE_BUF after POLLOUT,
    /// so no single write can block once the reader stops reading.
    private func fdWrite(_ arguments: [Value]) throws -> [Value] {
        if let (io, fd) = requestStream(for: arguments), fd != 0 {
            guard case .i32(let iovs) = arguments[1], case .i32(let count) = arguments[2], case .i32(let written) = arguments[3]
            else { return errno(.inval) }
            guard count <= 1024 else { return errno(.inval) }
            do {
                let access = GuestMemoryAccess(memory: try requireMemory())
                let (result, total) = try io.write(fd: fd, access, iovs: iovs, count: count)
                if io.heldStderrOverflowed { throw OutgrewSlice() }
                guard result == .success else { return errno(result) }
                try access.store(total, at: written)
            } catch is GuestMemoryAccess.Fault {
                return errno(.fault)
            }
            return errno(.success)
        }
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
        /// Its entry in the poll set, when it is waited on.
        var pollIndex: Int?
        /// Answered without waiting: ready (nil) or with this error.
        var immediate: WASIErrno??
        var isCPUClock = false
    }

    /// Most subscriptions one poll_oneoff may pass (the array must also fit in guest memory).
    static let maxPollSubscriptions: UInt32 = 1 << 17

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

    /// Our own poll_oneoff: clocks, and descriptors that can block (sockets, pipe-like stdio)
    /// waited on together with one `ppoll`, which the kill signal interrupts. Other WasmKit
    /// descriptors (regular files, directories) are always ready, as poll(2) says of files; an
    /// unknown number gets an event with EBADF. Only a call made of clocks alone that names a
    /// CPU-time clock goes to WasmKit; beside descriptors, a CPU-time clock is taken as a
    /// monotonic timeout.
    private func pollOneoff(_ arguments: [Value]) throws -> [Value] {
        guard case .i32(let input) = arguments[0], case .i32(let output) = arguments[1],
            case .i32(let count) = arguments[2], case .i32(let eventCountPointer) = arguments[3]
        else { return errno(.inval) }
        guard count > 0, count <= Self.maxPollSubscriptions else { return errno(.inval) }
        // poll_oneoff is the one call of a request run that can wait (a sleep).
        if onCallerThread { throw OutgrewSlice() }
        let memory = try requireMemory()
        guard WASIPointerChecks.check("poll_oneoff", arguments, memory: memory, tableSizes: tableSizes) else { return errno(.fault) }
        let access = GuestMemoryAccess(memory: memory)
        var subscriptions: [Subscription] = []
        subscriptions.reserveCapacity(Int(count))
        var pollEntries: [pollfd] = []
        let atLimit = openConnections >= maxConnections
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
                    let flags = try access.load(base &+ 40, as: UInt16.self)
                    guard flags & ~1 == 0 else { return errno(.inval) }
                    let absolute = flags & 1 != 0
                    switch (clock, absolute) {
                    case (0, true):
                        let real = Self.realtimeNow()
                        subscription.clockDeadline = timeout > real ? now &+ (timeout - real) : now
                    case (1, true): subscription.clockDeadline = timeout
                    case (0, false), (1, false), (2, false), (3, false):
                        let (sum, overflow) = now.addingReportingOverflow(timeout)
                        subscription.clockDeadline = overflow ? .max : sum
                        subscription.isCPUClock = clock > 1
                    case (2, true), (3, true):
                        subscription.clockDeadline = now
                        subscription.isCPUClock = true
                    default: return errno(.inval)
                    }
                case 1, 2:  // fd_read, fd_write
                    let fd = try access.load(base &+ 16, as: UInt32.self)
                    subscription.fd = fd
                    let events = Int16(subscription.tag == 1 ? POLLIN : POLLOUT)
                    switch descriptors[fd] {
                    case .socket(let socket):
                        // At the connection limit a listener is never reported readable: its
                        // connections wait in the backlog until the guest closes one.
                        let hostFd = socket.isListener && subscription.tag == 1 && atLimit ? -1 : socket.fd
                        subscription.pollIndex = pollEntries.count
                        pollEntries.append(pollfd(fd: hostFd, events: events, revents: 0))
                    case .wasi:
                        if let host = blockingStdio(fd) {
                            subscription.pollIndex = pollEntries.count
                            pollEntries.append(pollfd(fd: host, events: events, revents: 0))
                        } else {
                            subscription.immediate = .some(nil)
                        }
                    case nil:
                        subscription.immediate = .some(.badf)
                    }
                default:
                    return errno(.inval)
                }
                subscriptions.append(subscription)
            }
        } catch is GuestMemoryAccess.Fault {
            return errno(.fault)
        }
        if subscriptions.allSatisfy({ $0.tag == 0 }) && subscriptions.contains(where: \.isCPUClock) {
            return try callStock("poll_oneoff", arguments)
        }
        let deadline = subscriptions.compactMap(\.clockDeadline).min()
        let immediate = subscriptions.contains { $0.immediate != nil }
        if immediate {
            return try waitForSubscriptions(subscriptions, &pollEntries, Self.monotonicNow(), access, output, eventCountPointer)
        }
        return try whileBlocked {
            try waitForSubscriptions(subscriptions, &pollEntries, deadline, access, output, eventCountPointer)
        }
    }

    /// poll_oneoff's wait: until a subscription fires or the guest is killed.
    private func waitForSubscriptions(
        _ subscriptions: [Subscription], _ pollEntries: inout [pollfd], _ deadline: UInt64?,
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
                for subscription in subscriptions where subscription.tag != 0 {
                    if let immediate = subscription.immediate {
                        try writeEvent(access, output, ready, subscription, nbytes: 0, hangup: false, error: immediate ?? .success)
                        ready += 1
                        continue
                    }
                    guard let index = subscription.pollIndex else { continue }
                    let revents = pollEntries[index].revents
                    guard revents != 0 else { continue }
                    if revents & Int16(POLLNVAL) != 0 {
                        try writeEvent(access, output, ready, subscription, nbytes: 0, hangup: false, error: .badf)
                    } else {
                        let hangup = revents & Int16(POLLHUP) != 0
                        var available: Int32 = 0
                        if subscription.tag == 1 { _ = ioctl(pollEntries[index].fd, UInt(FIONREAD), &available) }
                        try writeEvent(access, output, ready, subscription, nbytes: UInt64(max(0, available)), hangup: hangup)
                    }
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

    private func writeEvent(
        _ access: GuestMemoryAccess, _ output: UInt32, _ position: Int, _ subscription: Subscription, nbytes: UInt64, hangup: Bool,
        error: WASIErrno = .success
    ) throws(GuestMemoryAccess.Fault) {
        let base = output &+ UInt32(position) &* 32
        try access.store(subscription.userData, at: base)
        try access.store(UInt16(error.rawValue), at: base &+ 8)
        try access.store(subscription.tag, at: base &+ 10)
        try access.store(nbytes, at: base &+ 16)
        try access.store(UInt16(hangup ? 1 : 0), at: base &+ 24)
    }
}
