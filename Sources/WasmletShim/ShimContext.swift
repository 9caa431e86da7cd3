// Who this shim is: fixed at `start` and shared by the serving loop's parts.

import WasmletConventions

#if canImport(Glibc)
import Glibc
#endif

public struct ShimContext: Sendable {
    /// Reported as the shim pid and, since guests have no process of their own, as every task's pid.
    public var pid: Int32
    public var namespace: String
    public var group: String
    /// containerd's ttrpc socket address, for events ($TTRPC_ADDRESS at `start`).
    public var ttrpcAddress: String
    /// wasmletd's API socket.
    public var daemonSocketPath: String
    /// This shim's own socket file (removed on exit).
    public var socketPath: String
    public var log: ShimLog
    /// The metadata appended to every forwarded request, encoded once.
    public let encodedMetadata: [UInt8]

    public static let versionNumber = "0.1.0"
    public static let version = "wasmlet-shim/" + versionNumber
    /// The daemon's socket as root: the shim runs as root under containerd.
    public static let defaultDaemonSocket = WasmletSocketPath.rootDefault

    public init(
        pid: Int32, namespace: String, group: String, ttrpcAddress: String, daemonSocketPath: String,
        socketPath: String, log: ShimLog
    ) {
        self.pid = pid
        self.namespace = namespace
        self.group = group
        self.ttrpcAddress = ttrpcAddress
        self.daemonSocketPath = daemonSocketPath
        self.socketPath = socketPath
        self.log = log
        encodedMetadata = ShimMetadata.encode(
            ShimMetadata.entries(pid: pid, namespace: namespace, group: group, ttrpcAddress: ttrpcAddress))
    }

    public var pidValue: UInt32 { UInt32(truncatingIfNeeded: pid) }

    /// `$WASMLET_SOCKET` (a path or unix:// address) if set and non-empty, else the default.
    public static func daemonSocketFromEnvironment() -> String {
        if let value = environment(WasmletSocketPath.environmentVariable), !value.isEmpty {
            return UnixSocket.path(fromAddress: value)
        }
        return defaultDaemonSocket
    }

    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}
