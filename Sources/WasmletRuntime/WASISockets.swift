import CWasmletInterrupt
import Glibc
import WasmKit

/// The socket calls of WASI preview1 on real host sockets: `sock_accept`, `sock_recv`,
/// `sock_send`, `sock_shutdown`, and `fd_read`, `fd_write`, `fd_close`, `fd_fdstat_get`,
/// `fd_fdstat_set_flags`, `fd_filestat_get` on socket descriptors (`poll_oneoff` is in
/// WASIHost.swift).
///
/// Host sockets are always non-blocking. A call the guest made blocking waits in
/// `waitReady` (poll, which the kill signal interrupts, checking the kill flag around every
/// wait), so a guest blocked in accept, recv or send is killed like a sleeping one.
extension WASIHost {
    static let fdflagNonblock: UInt32 = 4
    static let connectionRights: UInt64 =
        (1 << 1) | (1 << 3) | (1 << 6) | (1 << 21) | (1 << 27) | (1 << 28)  // read, set_flags, write, filestat_get, poll, shutdown
    static let listenerRights: UInt64 = (1 << 3) | (1 << 21) | (1 << 27) | (1 << 29)  // set_flags, filestat_get, poll, accept
    static let fileTypeSocketStream: UInt8 = 6

    /// Closes a socket, counting a connection out of the limit.
    func closeSocket(_ socket: GuestSocket) {
        guard !socket.closed else { return }
        if !socket.isListener { openConnections -= 1 }
        socket.close()
    }

    /// Closes every socket the guest still holds (end of run).
    func closeSockets() {
        for socket in descriptors.sockets { closeSocket(socket) }
    }

    private func u32(_ arguments: [Value], _ index: Int) -> UInt32? {
        guard index < arguments.count, case .i32(let value) = arguments[index] else { return nil }
        return value
    }

    // MARK: accept

    func sockAccept(_ arguments: [Value]) throws -> [Value] {
        guard let socket = socket(for: arguments) else { return try callStock("sock_accept", arguments) }
        let memory = try requireMemory()
        guard WASIPointerChecks.check("sock_accept", arguments, memory: memory, tableSizes: tableSizes) else { return errno(.fault) }
        guard let flags = u32(arguments, 1), let resultPointer = u32(arguments, 2) else { return errno(.inval) }
        guard socket.isListener else { return errno(.inval) }
        guard flags & ~Self.fdflagNonblock == 0 else { return errno(.inval) }
        // Past the limit nothing is accepted: connections stay in the kernel's backlog.
        if openConnections >= maxConnections { return errno(socket.nonblocking ? .again : .mfile) }
        while true {
            try checkKilled()
            let connection = wasmlet_accept_nonblocking(socket.fd)
            if connection >= 0 {
                let guestSocket = GuestSocket(connection: connection, nonblocking: flags & Self.fdflagNonblock != 0)
                let fd = descriptors.insert(.socket(guestSocket))
                openConnections += 1
                do {
                    try GuestMemoryAccess(memory: memory).store(fd, at: resultPointer)
                } catch {
                    closeSocket(guestSocket)
                    descriptors.remove(fd)
                    return errno(.fault)
                }
                return errno(.success)
            }
            let error = Glibc.errno
            switch error {
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EAGAIN:
                if socket.nonblocking { return errno(.again) }
                try waitReady(socket.fd, events: Int16(POLLIN))
            default:
                return errno(WASIErrno(posix: error))
            }
        }
    }

    // MARK: recv and send

    /// The guest's buffers as (address, length), already bounds-checked by WASIPointerChecks.
    private func segments(_ memory: Memory, _ iovs: UInt32, _ count: UInt32) -> [(UInt32, UInt32)]? {
        let access = GuestMemoryAccess(memory: memory)
        var result: [(UInt32, UInt32)] = []
        result.reserveCapacity(Int(count))
        for index in 0..<count {
            guard let base = try? access.load(iovs &+ index &* 8, as: UInt32.self),
                let length = try? access.load(iovs &+ index &* 8 &+ 4, as: UInt32.self)
            else { return nil }
            result.append((base, length))
        }
        return result
    }

    /// Runs `body` with host iovecs over the guest's buffers, minus their first `skip` bytes.
    private func withHostIovecs(
        _ memory: Memory, _ segments: [(UInt32, UInt32)], skip: Int, _ body: (UnsafeMutablePointer<iovec>, Int) -> Int
    ) -> Int {
        let size = memory.byteCount
        guard size > 0 else {
            var empty = iovec()
            return body(&empty, 0)
        }
        return memory.withUnsafeMutableBufferPointer(offset: 0, count: size) { buffer -> Int in
            var vectors: [iovec] = []
            vectors.reserveCapacity(segments.count)
            var toSkip = skip
            for (address, length) in segments {
                if toSkip >= Int(length) {
                    toSkip -= Int(length)
                    continue
                }
                vectors.append(iovec(iov_base: buffer.baseAddress! + Int(address) + toSkip, iov_len: Int(length) - toSkip))
                toSkip = 0
            }
            return vectors.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }

    private func setReceiveLowWater(_ fd: Int32, _ bytes: Int) {
        var value = Int32(clamping: bytes)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// sock_recv(fd, iovs, iovs_len, riflags, ro_datalen*, ro_flags*), or fd_read(fd, iovs,
    /// iovs_len, nread*) on a socket. RECV_PEEK (1) leaves the data queued; RECV_WAITALL (2)
    /// waits until the buffers are full, end-of-file or an error.
    func sockRecv(_ arguments: [Value], fdRead: Bool) throws -> [Value] {
        let name = fdRead ? "fd_read" : "sock_recv"
        guard let socket = socket(for: arguments) else { return try callStock(name, arguments) }
        let memory = try requireMemory()
        guard WASIPointerChecks.check(name, arguments, memory: memory, tableSizes: tableSizes),
            let iovs = u32(arguments, 1), let count = u32(arguments, 2),
            let flags = fdRead ? 0 : u32(arguments, 3), let resultPointer = u32(arguments, fdRead ? 3 : 4),
            let buffers = segments(memory, iovs, count)
        else { return errno(.fault) }
        let flagsPointer = fdRead ? nil : u32(arguments, 5)
        guard flags & ~3 == 0 else { return errno(.inval) }
        guard !socket.isListener else { return errno(.notconn) }
        let peek = flags & 1 != 0, waitAll = flags & 2 != 0
        let total = buffers.reduce(0) { $0 + Int($1.1) }
        var received = 0
        var peerClosed = false
        receive: while total > 0 {
            try checkKilled()
            let rc = withHostIovecs(memory, buffers, skip: peek ? 0 : received) { vectors, vectorCount in
                var message = msghdr()
                message.msg_iov = vectors
                message.msg_iovlen = vectorCount
                return recvmsg(socket.fd, &message, Int32(MSG_DONTWAIT) | (peek ? Int32(MSG_PEEK) : 0))
            }
            if rc > 0 {
                received = peek ? rc : received + rc
                if !waitAll || received >= total || peerClosed || socket.nonblocking { break }
                if peek {
                    // Wait until the whole request is queued: poll reports readable only once
                    // SO_RCVLOWAT bytes are there (or the peer closed).
                    setReceiveLowWater(socket.fd, total)
                    defer { setReceiveLowWater(socket.fd, 1) }
                    let revents = try waitReady(socket.fd, events: Int16(POLLIN) | wasmlet_pollrdhup())
                    if revents & (wasmlet_pollrdhup() | Int16(POLLHUP) | Int16(POLLERR)) != 0 { peerClosed = true }
                }
                continue
            }
            if rc == 0 { break }  // end of file
            let error = Glibc.errno
            switch error {
            case EINTR:
                continue
            case EAGAIN:
                if socket.nonblocking {
                    if received > 0 { break receive }
                    return errno(.again)
                }
                try waitReady(socket.fd, events: Int16(POLLIN))
            default:
                if received > 0 { break receive }
                return errno(WASIErrno(posix: error))
            }
        }
        do {
            let access = GuestMemoryAccess(memory: memory)
            try access.store(UInt32(received), at: resultPointer)
            if let flagsPointer { try access.store(UInt16(0), at: flagsPointer) }
        } catch {
            return errno(.fault)
        }
        return errno(.success)
    }

    /// sock_send(fd, iovs, iovs_len, siflags, so_datalen*), or fd_write on a socket. A blocking
    /// send returns once everything is queued (or an error comes after a partial write); a
    /// non-blocking one sends what fits, EAGAIN if nothing does.
    func sockSend(_ arguments: [Value], fdWrite: Bool) throws -> [Value] {
        let name = fdWrite ? "fd_write" : "sock_send"
        guard let socket = socket(for: arguments) else { return try callStock(name, arguments) }
        let memory = try requireMemory()
        guard WASIPointerChecks.check(name, arguments, memory: memory, tableSizes: tableSizes),
            let iovs = u32(arguments, 1), let count = u32(arguments, 2), let resultPointer = u32(arguments, fdWrite ? 3 : 4),
            let buffers = segments(memory, iovs, count)
        else { return errno(.fault) }
        guard !socket.isListener else { return errno(.notconn) }
        let total = buffers.reduce(0) { $0 + Int($1.1) }
        var sent = 0
        send: while sent < total {
            try checkKilled()
            let rc = withHostIovecs(memory, buffers, skip: sent) { vectors, vectorCount in
                var message = msghdr()
                message.msg_iov = vectors
                message.msg_iovlen = vectorCount
                return sendmsg(socket.fd, &message, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            }
            if rc >= 0 {
                sent += rc
                if socket.nonblocking { break }
                continue
            }
            let error = Glibc.errno
            switch error {
            case EINTR:
                continue
            case EAGAIN:
                if socket.nonblocking {
                    if sent > 0 { break send }
                    return errno(.again)
                }
                try waitReady(socket.fd, events: Int16(POLLOUT))
            default:
                if sent > 0 { break send }
                return errno(WASIErrno(posix: error))
            }
        }
        do {
            try GuestMemoryAccess(memory: memory).store(UInt32(sent), at: resultPointer)
        } catch {
            return errno(.fault)
        }
        return errno(.success)
    }

    // MARK: shutdown and descriptor calls

    /// sock_shutdown(fd, sdflags): RD (1), WR (2) or both.
    func sockShutdown(_ arguments: [Value]) throws -> [Value] {
        guard let socket = socket(for: arguments) else { return try callStock("sock_shutdown", arguments) }
        guard let how = u32(arguments, 1), (1...3).contains(how) else { return errno(.inval) }
        guard !socket.isListener else { return errno(.notconn) }
        let mode = how == 1 ? Int32(SHUT_RD) : how == 2 ? Int32(SHUT_WR) : Int32(SHUT_RDWR)
        guard shutdown(socket.fd, mode) == 0 else { return errno(WASIErrno(posix: Glibc.errno)) }
        return errno(.success)
    }

    func socketFdstatGet(_ arguments: [Value]) throws -> [Value] {
        guard let socket = socket(for: arguments) else { return errno(.badf) }
        return try storeFdstat(
            arguments, fileType: Self.fileTypeSocketStream, flags: UInt16(socket.nonblocking ? Self.fdflagNonblock : 0),
            rightsBase: socket.isListener ? Self.listenerRights : Self.connectionRights,
            rightsInheriting: socket.isListener ? Self.connectionRights : 0)
    }

    /// fd_fdstat_set_flags on a socket: only NONBLOCK means anything.
    func socketSetFlags(_ arguments: [Value]) throws -> [Value] {
        guard let socket = socket(for: arguments), let flags = u32(arguments, 1) else { return errno(.badf) }
        guard flags & ~Self.fdflagNonblock == 0 else { return errno(.inval) }
        socket.nonblocking = flags & Self.fdflagNonblock != 0
        return errno(.success)
    }

    func socketFilestatGet(_ arguments: [Value]) throws -> [Value] {
        guard let socket = socket(for: arguments) else { return errno(.badf) }
        let memory = try requireMemory()
        guard WASIPointerChecks.check("fd_filestat_get", arguments, memory: memory, tableSizes: tableSizes),
            let pointer = u32(arguments, 1)
        else { return errno(.fault) }
        var info = stat()
        guard fstat(socket.fd, &info) == 0 else { return errno(WASIErrno(posix: Glibc.errno)) }
        func nanoseconds(_ time: timespec) -> UInt64 { UInt64(max(0, time.tv_sec)) &* 1_000_000_000 &+ UInt64(max(0, time.tv_nsec)) }
        let access = GuestMemoryAccess(memory: memory)
        do {
            try access.store(UInt64(info.st_dev), at: pointer)
            try access.store(UInt64(info.st_ino), at: pointer &+ 8)
            try access.store(UInt64(Self.fileTypeSocketStream), at: pointer &+ 16)
            try access.store(UInt64(info.st_nlink), at: pointer &+ 24)
            try access.store(UInt64(0), at: pointer &+ 32)
            try access.store(nanoseconds(info.st_atim), at: pointer &+ 40)
            try access.store(nanoseconds(info.st_mtim), at: pointer &+ 48)
            try access.store(nanoseconds(info.st_ctim), at: pointer &+ 56)
        } catch {
            return errno(.fault)
        }
        return errno(.success)
    }
}
