import WasmletTTRPC

/// Why a connection to the daemon could not be made.
public enum ConnectFailure: Sendable, Hashable {
    /// No socket file, or nobody listening on it: the daemon is not running (there).
    case notRunning
    /// The socket exists but this user may not open it.
    case permissionDenied
    /// A malformed path (empty, too long).
    case invalidPath(String)
    case other(String)

    init(_ error: TTRPCError) {
        if error.code == .invalidArgument {
            self = .invalidPath(error.message)
        } else if error.message.hasSuffix("permission denied") {
            self = .permissionDenied
        } else if error.message.contains("no such socket") || error.message.contains("connection refused")
            || error.message.contains("No such file") || error.message.contains("Connection refused")
        {
            self = .notRunning
        } else {
            self = .other(error.message)
        }
    }
}

/// The errors `WasmletClient` throws. `description` is the one line `wasmletctl` prints after
/// its "wasmletctl: " prefix.
public enum WasmletClientError: Error, Sendable, Hashable, CustomStringConvertible {
    case cannotConnect(socketPath: String, reason: ConnectFailure)
    /// The daemon answered with an error status, or the connection failed mid-call.
    case status(TTRPCError)

    /// The ttrpc status code: UNAVAILABLE for a connection failure.
    public var code: TTRPCStatusCode {
        switch self {
        case .cannotConnect(_, .permissionDenied): .permissionDenied
        case .cannotConnect(_, .invalidPath): .invalidArgument
        case .cannotConnect: .unavailable
        case .status(let error): error.code
        }
    }

    public var description: String {
        switch self {
        case .cannotConnect(let path, .notRunning):
            return "cannot connect: is wasmletd running? tried \(path)"
        case .cannotConnect(let path, .permissionDenied):
            return "cannot connect to \(path): permission denied; "
                + "is your user in the socket's group? (ls -l \(path); or use sudo)"
        case .cannotConnect(let path, .invalidPath(let message)):
            return "cannot connect to \(path): \(message)"
        case .cannotConnect(let path, .other(let message)):
            return "cannot connect: is wasmletd running? tried \(path) (\(message))"
        case .status(let error):
            let message = error.message.isEmpty ? error.code.name : error.message
            switch error.code {
            case .permissionDenied:
                return "\(message); the daemon serves only root and its socket's group: "
                    + "ask for your user to be added to that group"
            case .unavailable:
                return "lost connection to wasmletd: \(message)"
            case .deadlineExceeded:
                return "wasmletd did not answer in time: \(message)"
            case .unimplemented:
                return "wasmletd does not support this call (older daemon?): \(message)"
            default:
                return message
            }
        }
    }
}
