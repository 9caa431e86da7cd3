import Foundation
import Glibc
import Logging
import WasmletFDHandoff
import WasmletRuntime
import WasmletService
import WasmletTTRPC

/// Takes listening sockets from containerd-shim-wasmlet-v1 (SCM_RIGHTS) and keeps them in a
/// `ListenerHandoffTable` until the container's Create claims them.
///
/// Why a socket of its own: a container's listeners must live in its pod's network namespace,
/// which only the shim can enter (setns needs CAP_SYS_ADMIN; wasmletd runs without it), so the
/// shim creates them and passes them here; the API socket's ttrpc server is NIO-based and
/// cannot receive descriptors. The socket is `<api socket>.listeners` (SOCK_SEQPACKET: one
/// message per handoff; the format is in Sources/WasmletFDHandoff/ListenerHandoffMessage.swift),
/// mode 0660 with the API socket's group, and each connection is checked with the same
/// `PeerAuthorizer` (SO_PEERCRED) before anything is read: a refused peer's descriptors are
/// never received. One plain thread serves it, one short connection at a time (each bounded by
/// a 2 s timeout), and sweeps expired entries about once a second.
package final class ListenerHandoffServer: @unchecked Sendable {
    let path: String
    let table: ListenerHandoffTable
    private let authorize: @Sendable (PeerCredentials) -> Bool
    private let logger: Logger
    private var listener: Int32
    private var wake: (read: Int32, write: Int32)
    private var thread: Thread?
    private let stopped = ConditionLock<Bool>(false)

    /// Binds `path` (replacing a stale socket file) and starts serving.
    package init(
        path: String, table: ListenerHandoffTable, group: gid_t?, authorize: @escaping @Sendable (PeerCredentials) -> Bool,
        logger: Logger
    ) throws {
        self.path = path
        self.table = table
        self.authorize = authorize
        self.logger = logger
        switch HandoffSocket.listen(path: path, mode: 0o660, group: group) {
        case .success(let fd): listener = fd
        case .failure(let error): throw DaemonError.startup("listener handoff socket: \(error)")
        }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            Glibc.close(listener)
            throw DaemonError.startup("listener handoff socket: pipe: \(String(cString: strerror(errno)))")
        }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        wake = (ends[0], ends[1])
        let thread = Thread { [self] in
            nameCurrentThread("wasmlet-handoff")
            serve()
        }
        self.thread = thread
        thread.start()
    }

    /// Stops the thread, removes the socket and closes every unclaimed listener.
    package func stop() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        stopped.wait { $0 }
        table.closeAll()
    }

    private func serve() {
        defer {
            Glibc.close(listener)
            unlink(path)
            Glibc.close(wake.read)
            Glibc.close(wake.write)
            stopped.set(true)
        }
        var backoffMilliseconds: Int32 = 0
        while true {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, 1000)
            if ready < 0 && errno != EINTR {
                logger.error("listener handoff socket: poll: \(String(cString: strerror(errno)))")
                return
            }
            for key in table.sweep() {
                logger.notice(
                    "closed handed-off listeners no Create claimed",
                    metadata: ["namespace": "\(key.namespace)", "id": "\(key.id)", "after": "\(table.lifetime)"])
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLIN) != 0 {
                let connection = accept(listener, nil, nil)
                if connection >= 0 {
                    if backoffMilliseconds > 0 { logger.notice("listener handoff socket: accepting again") }
                    backoffMilliseconds = 0
                    _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                    handle(connection)
                    Glibc.close(connection)
                } else if errno != EINTR && errno != EAGAIN {
                    // Out of descriptors the listener stays readable and the loop would spin:
                    // back off (10 ms, doubling to 1 s), still woken by a stop.
                    if backoffMilliseconds == 0 {
                        logger.warning("listener handoff socket: accept failed, backing off: \(String(cString: strerror(errno)))")
                    }
                    backoffMilliseconds = min(1000, max(10, backoffMilliseconds * 2))
                    var wakeOnly = pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)
                    if poll(&wakeOnly, 1, backoffMilliseconds) > 0 { return }
                }
            }
        }
    }

    private func reply(_ connection: Int32, _ reply: ListenerHandoffReply) {
        _ = FDPassing.send(socket: connection, payload: reply.encoded, descriptors: [])
    }

    private func handle(_ connection: Int32) {
        HandoffSocket.setTimeouts(connection, milliseconds: 2000)
        guard let credentials = FDPassing.peerCredentials(connection) else { return }
        let peer = PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
        guard authorize(peer) else {
            logger.notice("refusing listener handoff connection", metadata: ["peer": "\(peer)"])
            // Drain the message with no room for descriptors: the kernel discards (closes)
            // them, so a refused peer's sockets never enter this process; then answer (closing
            // with the message unread would reset the connection and lose the answer).
            if case .success(let discarded) = FDPassing.receive(socket: connection, maxPayload: 1, maxDescriptors: 0) {
                for fd in discarded.descriptors { Glibc.close(fd) }
            }
            reply(connection, .error("not authorized"))
            return
        }
        let received: FDPassing.Received
        switch FDPassing.receive(socket: connection, maxPayload: ListenerHandoffMessage.maxBytes) {
        case .success(let message): received = message
        case .failure(let error):
            logger.warning("listener handoff: \(error)", metadata: ["peer": "\(peer)"])
            return
        }
        // From here on the descriptors are ours: keep them in the table or close them.
        func refuse(_ why: String) {
            for fd in received.descriptors { Glibc.close(fd) }
            logger.warning("refused a listener handoff", metadata: ["peer": "\(peer)", "error": "\(why)"])
            reply(connection, .error(why))
        }
        if received.truncated { return refuse("message or descriptors truncated (at most \(FDPassing.maxDescriptors))") }
        let message: ListenerHandoffMessage
        do {
            message = try ListenerHandoffMessage(decoding: received.payload)
        } catch {
            return refuse("malformed handoff: \(error)")
        }
        guard !received.descriptors.isEmpty, received.descriptors.count == message.bound.count else {
            return refuse("\(received.descriptors.count) descriptors for \(message.bound.count) listeners")
        }
        for fd in received.descriptors where !SocketFacts.isListeningTCP(fd) {
            return refuse("descriptor for \(message.bound[received.descriptors.firstIndex(of: fd)!]) is not a listening TCP socket")
        }
        let owned = HandedOffListeners(annotation: message.annotation, bound: message.bound, descriptors: received.descriptors)
        let key = InstanceKey(namespace: message.namespace, id: message.id)
        do {
            try table.deposit(owned, for: key)
        } catch {
            owned.close()
            logger.warning("refused a listener handoff", metadata: ["peer": "\(peer)", "error": "\(error)"])
            reply(connection, .error(error.description))
            return
        }
        logger.info(
            "listeners handed off",
            metadata: [
                "namespace": "\(key.namespace)", "id": "\(key.id)", "listeners": "\(message.bound.joined(separator: ","))",
                "shim_pid": "\(peer.pid)",
            ])
        reply(connection, .ok)
    }
}

/// A value and a condition to wait on it (the handoff thread's stop handshake).
final class ConditionLock<Value>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func set(_ newValue: Value) {
        condition.lock()
        value = newValue
        condition.broadcast()
        condition.unlock()
    }

    func wait(until predicate: (Value) -> Bool) {
        condition.lock()
        while !predicate(value) { condition.wait() }
        condition.unlock()
    }
}
