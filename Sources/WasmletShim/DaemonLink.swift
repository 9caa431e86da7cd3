// The shim's single connection to wasmletd. Requests from every containerd connection are
// multiplexed onto it, each under a fresh odd stream id (the daemon rejects even ids); the
// pending table maps the daemon-side id back to where the answer must go.

#if canImport(Glibc)
import Glibc
#endif

/// Where the answer to a forwarded request goes.
public enum CallOrigin: Sendable, Equatable {
    /// A containerd connection (by the server's connection number) and its own stream id.
    case containerd(connection: Int, streamID: UInt32)
    /// The shim's own Wait for a started task.
    case shim
}

public struct PendingCall: Sendable {
    public var origin: CallOrigin
    public var call: TaskCall
}

final class DaemonLink {
    let path: String
    private(set) var fd: Int32 = -1
    var reader = FrameReader()
    var queue = WriteQueue()
    /// Daemon-side stream id -> pending call.
    var pending: [UInt32: PendingCall] = [:]
    private var nextStreamID: UInt32 = 1
    /// Why the last connect failed (for the "wasmletd is not running" message).
    private(set) var lastConnectError: SystemError?

    init(path: String) { self.path = path }

    var isConnected: Bool { fd >= 0 }

    /// One non-blocking connect attempt; true when connected.
    func connect() -> Bool {
        if isConnected { return true }
        switch UnixSocket.connect(path: path, timeoutMilliseconds: 0) {
        case .success(let connected):
            fd = connected
            lastConnectError = nil
            return true
        case .failure(let error):
            lastConnectError = error
            return false
        }
    }

    /// Queues a request (an encoded ttrpc.Request) under a new stream id and remembers the call.
    func send(request: [UInt8], flags: UInt8 = 0, pending call: PendingCall) {
        let streamID = allocateStreamID()
        pending[streamID] = call
        queue.append(Frame(streamID: streamID, type: .request, flags: flags, payload: request).encoded())
    }

    /// Odd ids, increasing, wrapping to 1 before overflow and skipping ids still pending.
    private func allocateStreamID() -> UInt32 {
        while true {
            let id = nextStreamID
            nextStreamID = id >= UInt32.max - 2 ? 1 : id + 2
            if pending[id] == nil { return id }
        }
    }

    /// Closes the connection and hands back the calls that will never get a daemon answer, in
    /// the order they were sent.
    func disconnect() -> [PendingCall] {
        if fd >= 0 { close(fd) }
        fd = -1
        reader = FrameReader()
        queue = WriteQueue()
        let orphans = pending.sorted { $0.key < $1.key }.map(\.value)
        pending = [:]
        return orphans
    }
}
