import Foundation
import Glibc
import SwiftProtobuf
import WasmletAPI
import WasmletTTRPC


package struct TestFailure: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// One running `wasmletd`, a ChildProcess (posix_spawn and waitpid; see there why not
/// Foundation's Process). Every wait is async (Task.sleep between polls): a test waiting for
/// a daemon must not hold one of the few cooperative threads other suites run on.
package final class DaemonProcess: @unchecked Sendable {
    package let child: ChildProcess
    package let socketPath: String
    package let stateDirectory: String
    package let logPath: String
    /// Kept alive (not removed) while this daemon may still use it.
    package let directory: TemporaryDirectory

    /// - Parameters:
    ///   - socketPath: the API socket (default: api.sock in `directory`).
    ///   - arguments: extra flags; `--socket` and `--state-dir` are added unless `launcher` is set.
    ///   - environment: added to (or, with nil values, removed from) the test's environment.
    ///   - launcher: run wasmletd through this program (e.g. systemd-socket-activate) with
    ///     `launcherArguments` before the daemon path.
    ///   - waitForSocket: return only once the API socket accepts connections.
    package init(
        directory: TemporaryDirectory, socketPath: String? = nil, stateDirectory: String? = nil, arguments: [String] = [],
        environment: [String: String?] = [:], launcher: String? = nil, launcherArguments: [String] = [],
        waitForSocket: Bool = true, logName: String = "wasmletd.log"
    ) async throws {
        self.directory = directory
        self.socketPath = socketPath ?? directory.path + "/api.sock"
        self.stateDirectory = stateDirectory ?? directory.path + "/state"
        logPath = directory.path + "/" + logName
        var env = ProcessInfo.processInfo.environment
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            env[name] = nil
        }
        for (name, value) in environment { env[name] = value }
        let daemonArguments = ["--socket", self.socketPath, "--state-dir", self.stateDirectory, "--log-level", "debug"] + arguments
        if let launcher {
            child = try ChildProcess(
                launcher, launcherArguments + [daemonPath] + daemonArguments, environment: env, stdout: logPath,
                stderr: nil)
        } else {
            child = try ChildProcess(daemonPath, daemonArguments, environment: env, stdout: logPath, stderr: nil)
        }
        // If this throws, deinit kills the daemon.
        if waitForSocket { try await waitUntilServing() }
    }

    deinit {
        child.killAndReap()
    }

    package var pid: pid_t { child.pid }

    package var isRunning: Bool { child.isRunning }

    package var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Polls until a connection to the socket succeeds.
    package func waitUntilServing(timeout: Duration = .seconds(60)) async throws {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while clock.now < end {
            if let ended = child.poll() {
                throw TestFailure("wasmletd \(ended) before serving:\n\(log)")
            }
            if let fd = try? RawConnection.connectFD(socketPath) {
                close(fd)
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("wasmletd did not serve \(socketPath) within \(timeout):\n\(log)")
    }

    package func signal(_ number: Int32) { child.signal(number) }

    /// Waits for the process to end; nil if it is still running after `timeout`. `status` is
    /// the exit code, or the signal number with reason `.uncaughtSignal` (as `Process` has it).
    package func waitForExit(timeout: Duration = .seconds(30)) async -> (status: Int32, reason: Process.TerminationReason)? {
        switch await child.wait(timeout: timeout) {
        case .exited(let code): (code, .exit)
        case .signaled(let signal): (signal, .uncaughtSignal)
        case nil: nil
        }
    }

    /// SIGTERM and wait; SIGKILL if it does not go.
    package func stop() async {
        guard child.isRunning else { return }
        signal(SIGTERM)
        if await waitForExit(timeout: .seconds(30)) == nil {
            child.killAndReap()
        }
    }

    /// For `defer`, which cannot await: SIGKILL and reap at once (the daemon's graceful shutdown
    /// could take its whole grace period, with a thread blocked). Nothing checks how a daemon
    /// ends here; tests of shutdown call `stop()` or signal it and `waitForExit()`.
    package func killAndReap() {
        child.killAndReap()
    }

    package func client() async throws -> RuntimeClient { try await RuntimeClient(socketPath: socketPath) }
}

/// A bound Unix datagram socket in a test's directory that the daemon sends to: the service
/// manager's end of NOTIFY_SOCKET, or journald's of /run/systemd/journal/socket. Receiving
/// never blocks a thread: waits poll with Task.sleep in between.
package final class DatagramReceiver: @unchecked Sendable {
    package let path: String
    private let fd: Int32

    package init(directory: TemporaryDirectory, name: String) throws {
        path = directory.path + "/" + name
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno)!) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(.init(rawValue: code)!)
        }
        chmod(path, 0o666)  // whoever the sender runs as
    }

    deinit { close(fd) }

    private let drainLock = NSLock()
    private var drainedDatagrams: [[UInt8]] = []
    private var drainStopped = false

    /// Receives on a thread of its own from now until `stopDraining()`. A receiver that reads
    /// only at the end holds its senders up: libsystemd's journal sends block once the socket
    /// has net.unix.max_dgram_qlen (10 by default) datagrams queued, which a daemon logging at
    /// debug reaches within a few calls. journald reads as entries come, and so must the test.
    package func startDraining() {
        var timeout = timeval(tv_sec: 0, tv_usec: 20_000)  // how often the thread looks at stop
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while !drainLock.withLock({ drainStopped }) {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count >= 0 { drainLock.withLock { drainedDatagrams.append(Array(buffer[0..<count])) } }
            }
        }
        thread.start()
    }

    package func stopDraining() { drainLock.withLock { drainStopped = true } }

    /// What the draining thread has received so far.
    package var drained: [[UInt8]] { drainLock.withLock { drainedDatagrams } }

    /// A datagram already queued, or nil.
    package func receiveNow() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        guard count >= 0 else { return nil }
        return Array(buffer[0..<count])
    }

    /// Datagrams as they arrive until `timeout`; stops early when `body` returns false.
    package func receive(timeout: Duration, _ body: ([UInt8]) -> Bool) async {
        let end = ContinuousClock.now + timeout
        while true {
            while let datagram = receiveNow() {
                if !body(datagram) { return }
            }
            if ContinuousClock.now >= end { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Every datagram received until `timeout` passes.
    package func collect(for timeout: Duration) async -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        await receive(timeout: timeout) { datagrams.append($0); return true }
        return datagrams
    }

    /// Datagrams, as text, until one satisfies `match` (returned, and last of all seen), or nil
    /// after `timeout`.
    package func waitFor(timeout: Duration = .seconds(60), _ match: (String) -> Bool) async -> (String, [String])? {
        var seen: [String] = []
        var found: String?
        await receive(timeout: timeout) { datagram in
            let message = String(decoding: datagram, as: UTF8.self)
            seen.append(message)
            if match(message) { found = message }
            return found == nil
        }
        return found.map { ($0, seen) }
    }
}

/// The wasmlet.v1.Runtime calls over a real TTRPCClient connection.
package struct RuntimeClient {
    package let connection: TTRPCClient

    package init(socketPath: String) async throws {
        connection = try await TTRPCClient.connect(unixSocketPath: socketPath)
    }

    package func call<Request, Response>(
        _ method: RPCMethod<Request, Response>, _ request: Request, timeout: Duration? = .seconds(30)
    ) async throws -> Response {
        try await connection.call(
            service: method.service, method: method.method, request: request, responseType: Response.self, timeout: timeout)
    }

    package func create(
        _ id: String, module: String, namespace: String = "test", args: [String] = [], labels: [String: String] = [:]
    ) async throws -> Wasmlet_V1_Instance {
        var request = Wasmlet_V1_CreateRequest()
        request.namespace = namespace
        request.id = id
        request.module = .path(module)
        request.args = args.isEmpty ? [id] : args
        request.labels = labels
        return try await call(WasmletRuntimeAPI.create, request).instance
    }

    package func start(_ id: String, namespace: String = "test") async throws -> Wasmlet_V1_Instance {
        var request = Wasmlet_V1_StartRequest()
        request.namespace = namespace
        request.id = id
        return try await call(WasmletRuntimeAPI.start, request).instance
    }

    package func wait(_ id: String, namespace: String = "test", timeout: Duration? = .seconds(30)) async throws -> Wasmlet_V1_ExitRecord {
        var request = Wasmlet_V1_WaitRequest()
        request.namespace = namespace
        request.id = id
        return try await call(WasmletRuntimeAPI.wait, request, timeout: timeout).exit
    }

    package func kill(_ id: String, namespace: String = "test", signal: UInt32 = 9) async throws {
        var request = Wasmlet_V1_KillRequest()
        request.namespace = namespace
        request.id = id
        request.signal = signal
        _ = try await call(WasmletRuntimeAPI.kill, request)
    }

    package func delete(_ id: String, namespace: String = "test") async throws -> Wasmlet_V1_DeleteResponse {
        var request = Wasmlet_V1_DeleteRequest()
        request.namespace = namespace
        request.id = id
        return try await call(WasmletRuntimeAPI.delete, request)
    }

    package func inspect(_ id: String, namespace: String = "test") async throws -> Wasmlet_V1_Instance {
        var request = Wasmlet_V1_InspectRequest()
        request.namespace = namespace
        request.id = id
        return try await call(WasmletRuntimeAPI.inspect, request).instance
    }

    package func list(namespace: String = "", labels: [String: String] = [:]) async throws -> [Wasmlet_V1_Instance] {
        var request = Wasmlet_V1_ListRequest()
        request.namespace = namespace
        request.labelSelector = labels
        return try await call(WasmletRuntimeAPI.list, request).instances
    }

    package func stats() async throws -> Wasmlet_V1_StatsResponse {
        try await call(WasmletRuntimeAPI.stats, Wasmlet_V1_StatsRequest())
    }

    package func version() async throws -> Wasmlet_V1_VersionResponse {
        try await call(WasmletRuntimeAPI.version, Wasmlet_V1_VersionRequest())
    }

    package func close() async { await connection.close() }
}

/// The ttrpc status code a call failed with (nil if it did not fail with a TTRPCError).
package func statusCode(of body: () async throws -> Void) async -> (TTRPCStatusCode, String)? {
    do {
        try await body()
        return nil
    } catch let error as TTRPCError {
        return (error.code, error.message)
    } catch {
        return nil
    }
}

/// A plain blocking Unix-socket connection for writing arbitrary bytes (the fuzz tests).
package final class RawConnection {
    package let fd: Int32

    package init(_ path: String) throws { fd = try Self.connectFD(path) }

    deinit { close(fd) }

    /// A connected Unix socket: a stream (the API), or `SOCK_SEQPACKET` (the listener handoff).
    package static func connectFD(_ path: String, type: __socket_type = SOCK_STREAM) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(type.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno)!) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(.init(rawValue: code)!)
        }
        return fd
    }

    /// Writes everything; false if the peer closed (EPIPE/ECONNRESET).
    @discardableResult
    package func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }

    package enum ReadResult: Equatable {
        case frame(streamID: UInt32, type: UInt8, payload: [UInt8])
        case closed
        case timedOut
    }

    /// Reads one ttrpc frame, or reports that the connection closed or nothing came.
    package func readFrame(timeoutMilliseconds: Int32 = 5_000) -> ReadResult {
        guard let header = read(count: 10, timeoutMilliseconds: timeoutMilliseconds) else { return lastResult }
        let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        let stream = UInt32(header[4]) << 24 | UInt32(header[5]) << 16 | UInt32(header[6]) << 8 | UInt32(header[7])
        guard let payload = read(count: length, timeoutMilliseconds: timeoutMilliseconds) else { return lastResult }
        return .frame(streamID: stream, type: header[8], payload: payload)
    }

    private var lastResult: ReadResult = .timedOut

    private func read(count: Int, timeoutMilliseconds: Int32) -> [UInt8]? {
        var bytes: [UInt8] = []
        while bytes.count < count {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, timeoutMilliseconds) == 1 else {
                lastResult = .timedOut
                return nil
            }
            var chunk = [UInt8](repeating: 0, count: min(65536, count - bytes.count))
            let received = recv(fd, &chunk, chunk.count, 0)
            if received <= 0 {
                lastResult = .closed
                return nil
            }
            bytes += chunk[0..<received]
        }
        return bytes
    }

    /// True once the peer has closed the connection (reads EOF within the timeout).
    package func isClosedByPeer(timeoutMilliseconds: Int32 = 5_000) -> Bool {
        while true {
            switch readFrame(timeoutMilliseconds: timeoutMilliseconds) {
            case .closed: return true
            case .timedOut: return false
            case .frame: continue
            }
        }
    }
}

/// A ttrpc frame: 10-byte header (length, stream id, type, flags; big-endian) and payload.
package func frame(streamID: UInt32, type: UInt8, payload: [UInt8], declaredLength: UInt32? = nil) -> [UInt8] {
    let length = declaredLength ?? UInt32(payload.count)
    var bytes: [UInt8] = []
    for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
    for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: streamID >> UInt32(shift))) }
    bytes += [type, 0]
    return bytes + payload
}

package func versionRequestFrame(streamID: UInt32) throws -> [UInt8] {
    var request = Ttrpc_Request()
    request.service = WasmletRuntimeAPI.serviceName
    request.method = "Version"
    request.payload = Data()
    return frame(streamID: streamID, type: 1, payload: try request.serializedBytes())
}

/// Decodes a response frame's status code and payload.
package func decodeResponse(_ payload: [UInt8]) throws -> (code: Int32, message: String, payload: Data) {
    let response = try Ttrpc_Response(serializedBytes: payload)
    return (response.status.code, response.status.message, response.payload)
}

/// `chattr FLAG PATH` (e.g. +i: EPERM for every write, even root's); false if it failed or
/// the file system does not support it. Blocks for this quick tool: callers undo it in `defer`.
package func chattr(_ flag: String, _ path: String) -> Bool {
    let child = try? ChildProcess("/usr/bin/chattr", [flag, path], environment: ProcessInfo.processInfo.environment)
    return child?.waitBlocking() == .exited(0)
}
