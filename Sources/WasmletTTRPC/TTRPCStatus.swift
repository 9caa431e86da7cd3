/// A ttrpc status code: the gRPC code set, carried as `ttrpc.Status.code` (int32).
/// A struct rather than an enum so that codes this module does not name still round-trip.
public struct TTRPCStatusCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let ok = Self(rawValue: 0)
    public static let cancelled = Self(rawValue: 1)
    public static let unknown = Self(rawValue: 2)
    public static let invalidArgument = Self(rawValue: 3)
    public static let deadlineExceeded = Self(rawValue: 4)
    public static let notFound = Self(rawValue: 5)
    public static let alreadyExists = Self(rawValue: 6)
    public static let permissionDenied = Self(rawValue: 7)
    public static let resourceExhausted = Self(rawValue: 8)
    public static let failedPrecondition = Self(rawValue: 9)
    public static let aborted = Self(rawValue: 10)
    public static let outOfRange = Self(rawValue: 11)
    public static let unimplemented = Self(rawValue: 12)
    public static let `internal` = Self(rawValue: 13)
    public static let unavailable = Self(rawValue: 14)
    public static let dataLoss = Self(rawValue: 15)
    public static let unauthenticated = Self(rawValue: 16)

    /// The gRPC spelling, e.g. "NOT_FOUND"; "CODE_<n>" for codes outside the set.
    public var name: String {
        switch rawValue {
        case 0: "OK"
        case 1: "CANCELLED"
        case 2: "UNKNOWN"
        case 3: "INVALID_ARGUMENT"
        case 4: "DEADLINE_EXCEEDED"
        case 5: "NOT_FOUND"
        case 6: "ALREADY_EXISTS"
        case 7: "PERMISSION_DENIED"
        case 8: "RESOURCE_EXHAUSTED"
        case 9: "FAILED_PRECONDITION"
        case 10: "ABORTED"
        case 11: "OUT_OF_RANGE"
        case 12: "UNIMPLEMENTED"
        case 13: "INTERNAL"
        case 14: "UNAVAILABLE"
        case 15: "DATA_LOSS"
        case 16: "UNAUTHENTICATED"
        default: "CODE_\(rawValue)"
        }
    }

    public var description: String { name }
}

/// A failed ttrpc call, and the one error type this module throws.
///
/// - A server handler throws it to answer with a specific status (any other error becomes INTERNAL).
/// - A client call throws it for a non-OK status from the server, and for local failures:
///   UNAVAILABLE when the connection cannot be made or drops, DEADLINE_EXCEEDED when the timeout
///   elapses, CANCELLED when the calling task is cancelled.
/// - Server setup (bind, adopt) throws it with a message naming the socket path.
public struct TTRPCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: TTRPCStatusCode
    public var message: String

    public init(_ code: TTRPCStatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public init(code: TTRPCStatusCode, message: String) {
        self.init(code, message)
    }

    /// "NOT_FOUND: instance default/x does not exist".
    public var description: String { message.isEmpty ? code.name : "\(code.name): \(message)" }

    public static func cancelled(_ message: String) -> Self { Self(.cancelled, message) }
    public static func unknown(_ message: String) -> Self { Self(.unknown, message) }
    public static func invalidArgument(_ message: String) -> Self { Self(.invalidArgument, message) }
    public static func deadlineExceeded(_ message: String) -> Self { Self(.deadlineExceeded, message) }
    public static func notFound(_ message: String) -> Self { Self(.notFound, message) }
    public static func alreadyExists(_ message: String) -> Self { Self(.alreadyExists, message) }
    public static func permissionDenied(_ message: String) -> Self { Self(.permissionDenied, message) }
    public static func resourceExhausted(_ message: String) -> Self { Self(.resourceExhausted, message) }
    public static func failedPrecondition(_ message: String) -> Self { Self(.failedPrecondition, message) }
    public static func aborted(_ message: String) -> Self { Self(.aborted, message) }
    public static func outOfRange(_ message: String) -> Self { Self(.outOfRange, message) }
    public static func unimplemented(_ message: String) -> Self { Self(.unimplemented, message) }
    public static func `internal`(_ message: String) -> Self { Self(.internal, message) }
    public static func unavailable(_ message: String) -> Self { Self(.unavailable, message) }
    public static func dataLoss(_ message: String) -> Self { Self(.dataLoss, message) }
    public static func unauthenticated(_ message: String) -> Self { Self(.unauthenticated, message) }
}

extension Ttrpc_Status {
    /// The wire status for `error`: TTRPCError keeps its code; anything else is INTERNAL with
    /// the error's description.
    init(error: any Error) {
        self.init()
        if let error = error as? TTRPCError {
            code = error.code.rawValue
            message = error.message
        } else {
            code = TTRPCStatusCode.internal.rawValue
            message = String(describing: error)
        }
    }

    init(_ code: TTRPCStatusCode, _ message: String) {
        self.init()
        self.code = code.rawValue
        self.message = message
    }
}
