/// The runtime's error vocabulary, deliberately the same small set containerd uses (errdefs), so
/// the daemon can map each kind once to a wire status code.
public struct RuntimeError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case notFound = "not found"
        case alreadyExists = "already exists"
        case invalidArgument = "invalid argument"
        case failedPrecondition = "failed precondition"
        case resourceExhausted = "resource exhausted"
        case permissionDenied = "permission denied"
        case unavailable = "unavailable"
        case `internal` = "internal"
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(message)" }

    static func notFound(_ message: String) -> RuntimeError { .init(.notFound, message) }
    static func alreadyExists(_ message: String) -> RuntimeError { .init(.alreadyExists, message) }
    static func invalidArgument(_ message: String) -> RuntimeError { .init(.invalidArgument, message) }
    static func failedPrecondition(_ message: String) -> RuntimeError { .init(.failedPrecondition, message) }
    static func resourceExhausted(_ message: String) -> RuntimeError { .init(.resourceExhausted, message) }
}
