// The serving shim: one thread, one poll() loop over
//   - the listening socket containerd connects to,
//   - every containerd connection (ttrpc requests in, responses out),
//   - the single connection to wasmletd (requests out, responses in),
//   - a self-pipe that turns SIGTERM/SIGINT into an orderly exit.
// Frames are relayed, not decoded: the shim only looks at the few task methods that change what
// it must clean up or answer for (see TaskCall, TaskTable, LocalAnswers).

import WasmletConventions

#if canImport(Glibc)
import Glibc
#endif

/// Write end of the self-pipe, for the signal handler (which can capture nothing).
nonisolated(unsafe) private var terminationPipeWriteEnd: Int32 = -1

/// One containerd connection: partial input and unsent output.
final class ContainerdConnection {
    let number: Int
    let fd: Int32
    var reader = FrameReader()
    var queue = WriteQueue()

    init(number: Int, fd: Int32) {
        self.number = number
        self.fd = fd
    }
}

public final class ShimServer {
    let context: ShimContext
    private var listener: Int32
    private let listenerIdentity: (UInt64, UInt64)?
    private var connections: [Int: ContainerdConnection] = [:]
    private var nextConnectionNumber = 1
    let daemon: DaemonLink
    var tasks = TaskTable()
    /// The network namespace of each pod sandbox this shim created (see PodNetwork.swift).
    var pods = PodNetworks()
    /// Set once the shim decided to exit: it then only flushes answers until this deadline.
    private var exitDeadline: Int64?
    /// `/tasks/exit` publications in flight (only when wasmletd was lost).
    private let publications = BackgroundPublications()
    private var signalPipe: (read: Int32, write: Int32) = (-1, -1)
    /// One read buffer for all sockets (the loop is single-threaded).
    private var scratch = [UInt8](repeating: 0, count: 32 * 1024)
    /// While accept fails (out of descriptors, say), the listener is left out of poll until
    /// then, or the loop would spin on a listener that stays readable.
    private var acceptPausedUntil: Int64?
    private var acceptBackoff = AcceptBackoff()
    /// The write queues' bound. A containerd connection is not read while its own answers, or
    /// the requests waiting to go to wasmletd, hold more than this: a peer that stops reading
    /// (or a wedged daemon) slows its senders down instead of growing the shim without limit.
    static let queueHighWater = 1 << 20

    /// Takes over `listener`, a bound, listening, non-blocking socket at `context.socketPath`.
    public init(context: ShimContext, listener: Int32) {
        self.context = context
        self.listener = listener
        self.listenerIdentity = UnixSocket.fileIdentity(context.socketPath)
        self.daemon = DaemonLink(path: context.daemonSocketPath)
    }

    private var log: ShimLog { context.log }

    // MARK: Loop

    /// Serves until Shutdown (with no tasks left) or SIGTERM; returns the exit status.
    public func run() -> Int32 {
        installSignalHandling()
        log.debug("serving on \(context.socketPath) for group \(context.group), daemon \(daemon.path)")
        while true {
            if let deadline = exitDeadline,
                connections.values.allSatisfy({ $0.queue.isEmpty }) || MonotonicClock.milliseconds() >= deadline
            {
                log.debug("exiting")
                publications.waitForAll()
                return 0
            }
            var fds = [pollfd]()
            var owners = [Int]()  // parallel to fds: -1 listener, -2 daemon, -3 signals, n connection
            if let until = acceptPausedUntil, MonotonicClock.milliseconds() >= until { acceptPausedUntil = nil }
            if listener >= 0 && acceptPausedUntil == nil {
                fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
                owners.append(-1)
            }
            if daemon.isConnected {
                fds.append(pollfd(fd: daemon.fd, events: events(for: daemon.queue), revents: 0))
                owners.append(-2)
            }
            if signalPipe.read >= 0 {
                fds.append(pollfd(fd: signalPipe.read, events: Int16(POLLIN), revents: 0))
                owners.append(-3)
            }
            let daemonBacklogged = daemon.queue.count >= Self.queueHighWater
            for connection in connections.values {
                let reading = !daemonBacklogged && connection.queue.count < Self.queueHighWater
                let events = (reading ? Int16(POLLIN) : 0) | (connection.queue.isEmpty ? 0 : Int16(POLLOUT))
                fds.append(pollfd(fd: connection.fd, events: events, revents: 0))
                owners.append(connection.number)
            }
            let wakeAt = [exitDeadline, acceptPausedUntil].compactMap { $0 }.min()
            let timeout = wakeAt.map { Int32(clamping: max(0, $0 - MonotonicClock.milliseconds())) } ?? -1
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                log.error("poll: \(SystemError.last)")
                return 1
            }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                switch owners[index] {
                case -1: acceptConnections()
                case -2: daemonEvent(entry.revents)
                case -3: signalEvent()
                default: connectionEvent(owners[index], entry.revents)
                }
            }
            flushAll()
        }
    }

    private func events(for queue: WriteQueue) -> Int16 {
        queue.isEmpty ? Int16(POLLIN) : Int16(POLLIN | POLLOUT)
    }

    /// Writes whatever the sockets take now, so answers do not wait for another poll round.
    private func flushAll() {
        if daemon.isConnected && !daemon.queue.isEmpty && !daemon.queue.flush(to: daemon.fd) {
            daemonLost("write to wasmletd failed: \(SystemError.last)")
        }
        for connection in Array(connections.values) where !connection.queue.isEmpty {
            if !connection.queue.flush(to: connection.fd) {
                closeConnection(connection.number, reason: "write failed: \(SystemError.last)")
            }
        }
    }

    /// Reads what is available; false on EOF or error (the socket is then done).
    private func readAvailable(_ fd: Int32, into reader: inout FrameReader) -> Bool {
        let count = scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return true }
        guard count > 0 else { return false }
        scratch.withUnsafeBytes { reader.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        return true
    }

    // MARK: containerd side

    private func acceptConnections() {
        while listener >= 0 {
            switch UnixSocket.accept(listener: listener) {
            case .success(nil):
                return
            case .success(let fd?):
                acceptBackoff.succeeded()
                let connection = ContainerdConnection(number: nextConnectionNumber, fd: fd)
                nextConnectionNumber += 1
                connections[connection.number] = connection
                log.debug("containerd connection \(connection.number) opened")
            case .failure(let error):
                let pause = acceptBackoff.failed()
                acceptPausedUntil = MonotonicClock.milliseconds() + pause
                log.error("accept on \(context.socketPath) failed: \(error); not accepting for \(pause) ms")
                return
            }
        }
    }

    private func connectionEvent(_ number: Int, _ revents: Int16) {
        guard let connection = connections[number] else { return }
        if revents & Int16(POLLOUT) != 0, !connection.queue.flush(to: connection.fd) {
            closeConnection(number, reason: "write failed: \(SystemError.last)")
            return
        }
        guard revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { return }
        guard readAvailable(connection.fd, into: &connection.reader) else {
            closeConnection(number, reason: "closed by peer")
            return
        }
        while connections[number] != nil {
            let frame: Frame?
            do {
                frame = try connection.reader.next()
            } catch {
                closeConnection(number, reason: "\(error)")
                return
            }
            guard let frame else { return }
            handleContainerdFrame(frame, from: connection)
        }
    }

    private func closeConnection(_ number: Int, reason: String) {
        guard let connection = connections.removeValue(forKey: number) else { return }
        close(connection.fd)
        log.debug("containerd connection \(number) closed: \(reason)")
    }

    private func respond(to origin: CallOrigin, flags: UInt8 = 0, payload: [UInt8]) {
        guard case .containerd(let number, let streamID) = origin, let connection = connections[number] else { return }
        connection.queue.append(Frame(streamID: streamID, type: .response, flags: flags, payload: payload).encoded())
    }

    private func handleContainerdFrame(_ frame: Frame, from connection: ContainerdConnection) {
        guard frame.type == FrameType.request.rawValue else {
            log.error("containerd connection \(connection.number): unexpected frame type \(frame.type); closing it")
            closeConnection(connection.number, reason: "protocol error")
            return
        }
        let request: TTRPCRequest
        let call: TaskCall
        let origin = CallOrigin.containerd(connection: connection.number, streamID: frame.streamID)
        do {
            request = try TTRPCRequest(decoding: frame.payload)
        } catch {
            log.error("containerd connection \(connection.number): malformed request (\(error)); closing it")
            closeConnection(connection.number, reason: "protocol error")
            return
        }
        do {
            call = try TaskCall(request: request)
        } catch {
            respond(
                to: origin,
                payload: TTRPCResponse.error(
                    StatusCode.invalidArgument, "\(request.service)/\(request.method): undecodable request: \(error)"
                ).encoded())
            return
        }
        log.debug("\(call.method) \(call.id) from connection \(connection.number) stream \(frame.streamID)")

        // Try the daemon (one non-blocking attempt when down); answer locally without it.
        guard ensureDaemon() else {
            answerLocally(call, origin: origin)
            return
        }
        if call.isTaskService && call.method == "Create", let create = call.create {
            guard prepareCreate(create, origin: origin) else { return }
        }
        let forwarded = ShimMetadata.appending(context.encodedMetadata, to: frame.payload)
        guard forwarded.count <= Frame.maxPayload else {
            abandonCreate(call)
            respond(
                to: origin,
                payload: TTRPCResponse.error(StatusCode.resourceExhausted, "request too large to forward").encoded())
            return
        }
        daemon.send(request: forwarded, flags: frame.flags, pending: PendingCall(origin: origin, call: call))
    }

    /// Mounts the rootfs and records the task as being created. False when the request was
    /// answered here instead (duplicate id, mount failure).
    private func prepareCreate(_ create: CreateTaskRequest, origin: CallOrigin) -> Bool {
        if tasks[create.id] != nil {
            respond(
                to: origin,
                payload: TTRPCResponse.error(
                    StatusCode.alreadyExists, "task \(create.id) already exists in this shim"
                ).encoded())
            return false
        }
        let rootfs = create.bundle + "/rootfs"
        if !create.rootfs.isEmpty {
            guard !create.bundle.isEmpty else {
                respond(
                    to: origin,
                    payload: TTRPCResponse.error(
                        StatusCode.invalidArgument, "Create \(create.id): rootfs mounts given without a bundle path"
                    ).encoded())
                return false
            }
            if let error = RootfsMounts.mountAll(create.rootfs, rootfs: rootfs) {
                log.error("Create \(create.id): \(error)")
                respond(to: origin, payload: TTRPCResponse.error(StatusCode.internal, error).encoded())
                return false
            }
            log.debug("mounted \(create.rootfs.count) rootfs mount(s) on \(rootfs)")
        }
        // Last, so a failure here has only the mounts to undo. The sockets go to the daemon
        // before Create is relayed; its Create claims them (ShimListeners).
        let facts = ShimListeners.facts(bundle: create.bundle)
        if let facts, let refusal = ShimListeners.prepare(id: create.id, facts: facts, pods: pods, context: context) {
            if !create.rootfs.isEmpty, let error = RootfsMounts.unmountAll(rootfs) {
                log.error("Create \(create.id) failed; \(error)")
            }
            respond(to: origin, payload: refusal.encoded())
            return false
        }
        if let facts, facts.kind == .sandbox {
            pods.recordSandbox(id: create.id, facts: facts)
            log.debug("pod sandbox \(create.id): listeners of its containers go in \(pods.namespace(ofSandbox: create.id)!)")
        }
        tasks.insertCreating(id: create.id, bundle: create.bundle, mounted: !create.rootfs.isEmpty)
        return true
    }

    /// Undoes `prepareCreate` for a Create that failed or will never be answered by the daemon.
    private func abandonCreate(_ call: TaskCall) {
        guard call.isTaskService, call.method == "Create", let entry = tasks[call.id], entry.state == .creating else {
            return
        }
        if entry.mounted, let error = RootfsMounts.unmountAll(entry.rootfs) {
            log.error("Create \(call.id) failed; \(error)")
        }
        tasks.remove(call.id)
        pods.forgetSandbox(id: call.id)
    }

    private func answerLocally(_ call: TaskCall, origin: CallOrigin) {
        let unreachable = LocalAnswers.unreachableMessage(path: daemon.path, error: daemon.lastConnectError)
        let answer = LocalAnswers.answer(call, tasks: &tasks, context: context, unreachable: unreachable)
        log.debug("answered \(call.method) \(call.id) locally (code \(answer.response.code))")
        respond(to: origin, payload: answer.response.encoded())
        if answer.shutdownRequested { shutdownRequested(now: call.shutdownNow) }
    }

    // MARK: Daemon side

    /// Connected to the daemon, or one attempt to get there.
    private func ensureDaemon() -> Bool {
        if daemon.isConnected { return true }
        if daemon.connect() {
            log.debug("connected to wasmletd at \(daemon.path)")
            return true
        }
        // Running tasks cannot outlive a daemon we cannot reach (normally already handled when
        // the connection broke).
        reportLostTasks()
        return false
    }

    private func daemonEvent(_ revents: Int16) {
        guard daemon.isConnected else { return }
        if revents & Int16(POLLOUT) != 0, !daemon.queue.flush(to: daemon.fd) {
            daemonLost("write to wasmletd failed: \(SystemError.last)")
            return
        }
        guard revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { return }
        guard readAvailable(daemon.fd, into: &daemon.reader) else {
            daemonLost("wasmletd closed the connection")
            return
        }
        while daemon.isConnected {
            let frame: Frame?
            do {
                frame = try daemon.reader.next()
            } catch {
                daemonLost("wasmletd sent \(error)")
                return
            }
            guard let frame else { return }
            handleDaemonFrame(frame)
        }
    }

    private func handleDaemonFrame(_ frame: Frame) {
        guard frame.type == FrameType.response.rawValue,
            let pending = daemon.pending.removeValue(forKey: frame.streamID)
        else {
            log.error("ignoring wasmletd frame type \(frame.type) on unknown stream \(frame.streamID)")
            return
        }
        // A response that does not decode is still relayed as it is; for the shim's own
        // bookkeeping it counts as a failure.
        let response = (try? TTRPCResponse(decoding: frame.payload)) ?? .error(StatusCode.internal, "undecodable")
        let call = pending.call
        if pending.origin == .shim {
            ownWaitAnswered(call, response)
            return
        }
        // Relay first, so the answer is queued before anything the bookkeeping may trigger.
        respond(to: pending.origin, flags: frame.flags, payload: frame.payload)
        guard call.isTaskService, call.execID.isEmpty else { return }
        switch call.method {
        case "Create":
            if response.isOK {
                tasks.setState(call.id, .created)
            } else {
                abandonCreate(call)
            }
        case "Start":
            if response.isOK, tasks[call.id]?.state == .created {
                tasks.setState(call.id, .running)
                sendOwnWait(call.id)
            }
        case "Wait":
            if response.isOK, let exit = TaskResponses.decodeWait(response.payload) {
                tasks.recordExit(call.id, exit)
            }
        case "Delete":
            // NOT_FOUND too: the daemon does not know the task, so nothing else will ever
            // release its mount or let the shim exit.
            if response.isOK || response.code == StatusCode.notFound, let entry = tasks.remove(call.id) {
                if entry.mounted, let error = RootfsMounts.unmountAll(entry.rootfs) {
                    log.error("Delete \(call.id): \(error)")
                }
                pods.forgetSandbox(id: call.id)
                log.debug("task \(call.id) deleted")
            }
        case "Shutdown":
            shutdownRequested(now: call.shutdownNow)
        default:
            break
        }
    }

    /// The shim's own Wait, so it knows the exit even if containerd never asks.
    private func sendOwnWait(_ id: String) {
        let request = TTRPCRequest(
            service: TaskCall.serviceV2, method: "Wait", payload: TaskIDRequest(id: id).encoded(),
            metadata: [MetadataEntry(ShimMetadataKey.containerdNamespace, context.namespace)])
        let bytes = ShimMetadata.appending(context.encodedMetadata, to: request.encoded())
        daemon.send(request: bytes, pending: PendingCall(origin: .shim, call: TaskCall(method: "Wait", id: id)))
    }

    private func ownWaitAnswered(_ call: TaskCall, _ response: TTRPCResponse) {
        guard response.isOK, let exit = TaskResponses.decodeWait(response.payload) else {
            log.error("own Wait for \(call.id) failed: code \(response.code) \(response.message)")
            return
        }
        tasks.recordExit(call.id, exit)
        log.debug("task \(call.id) exited with \(exit.status)")
    }

    /// The daemon connection broke: every guest it ran is gone.
    private func daemonLost(_ reason: String) {
        log.error("\(reason); reporting running tasks as exited (137)")
        let orphans = daemon.disconnect()
        reportLostTasks()
        for pending in orphans {
            guard case .containerd = pending.origin else { continue }
            let call = pending.call
            if call.isTaskService && call.method == "Shutdown" {
                // Nothing is left to stop: Shutdown succeeds as it would locally.
                respond(to: pending.origin, payload: TTRPCResponse.ok().encoded())
                shutdownRequested(now: call.shutdownNow)
                continue
            }
            abandonCreate(call)
            respond(to: pending.origin, payload: LocalAnswers.lostInFlight(call, tasks: tasks).encoded())
        }
    }

    /// Marks running tasks exited(137) and publishes /tasks/exit for each.
    private func reportLostTasks() {
        let lost = tasks.markAllLost(at: .now())
        guard !lost.isEmpty else { return }
        let events = lost.compactMap { entry in
            entry.exit.map { ExitEvent(containerID: entry.id, pid: context.pidValue, exit: $0) }
        }
        publications.start(events, namespace: context.namespace, ttrpcAddress: context.ttrpcAddress, log: log)
    }

    // MARK: Exit

    /// After a Shutdown answer: exit when no task is left, or at once when `now` was asked.
    private func shutdownRequested(now: Bool) {
        guard now || tasks.isEmpty else {
            log.debug("Shutdown: \(tasks.entries.count) task(s) left, staying")
            return
        }
        beginExit()
    }

    /// Stops accepting connections, removes the socket file (if it is still ours) and lets the
    /// loop flush pending answers for up to a second.
    private func beginExit() {
        guard exitDeadline == nil else { return }
        exitDeadline = MonotonicClock.milliseconds() + 1000
        if listener >= 0 {
            close(listener)
            listener = -1
        }
        if let identity = listenerIdentity, let current = UnixSocket.fileIdentity(context.socketPath),
            identity == current
        {
            unlink(context.socketPath)
        }
    }

    private func installSignalHandling() {
        // `start` forks this process with SIGTERM and SIGINT blocked, and so may whoever spawned
        // it; they are unblocked here whatever happens, handled or not.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        defer { sigprocmask(SIG_UNBLOCK, &set, nil) }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            UnixSocket.setNonBlocking(end, true)
        }
        signalPipe = (ends[0], ends[1])
        terminationPipeWriteEnd = ends[1]
        signal(SIGPIPE, SIG_IGN)
        let handler: @convention(c) (Int32) -> Void = { _ in
            var byte: UInt8 = 1
            _ = write(terminationPipeWriteEnd, &byte, 1)
        }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
    }

    private func signalEvent() {
        var byte: UInt8 = 0
        while read(signalPipe.read, &byte, 1) > 0 {}
        log.debug("termination signal received")
        beginExit()
    }
}

/// How long to stop accepting after accept fails: 10 ms, doubling while it keeps failing, at
/// most 1 s; back to 10 ms after a success.
struct AcceptBackoff {
    private(set) var nextPauseMilliseconds: Int64 = 10

    mutating func failed() -> Int64 {
        let pause = nextPauseMilliseconds
        nextPauseMilliseconds = min(1_000, nextPauseMilliseconds * 2)
        return pause
    }

    mutating func succeeded() { nextPauseMilliseconds = 10 }
}
