import WasmletRuntime
import WasmletTTRPC

/// RuntimeError kinds are containerd's errdefs; each maps to the gRPC code containerd uses for
/// it, so the shim and CLI can act on the code without parsing messages.
package enum ErrorMapping {
    package static func code(_ kind: RuntimeError.Kind) -> TTRPCStatusCode {
        switch kind {
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .invalidArgument: .invalidArgument
        case .failedPrecondition: .failedPrecondition
        case .resourceExhausted: .resourceExhausted
        case .permissionDenied: .permissionDenied
        case .unavailable: .unavailable
        case .internal: .internal
        }
    }

    /// The wire error for anything a handler throws.
    package static func ttrpc(_ error: any Error) -> TTRPCError {
        switch error {
        case let error as TTRPCError: error
        case let error as RuntimeError: TTRPCError(code(error.kind), error.message)
        case is CancellationError: .cancelled("the call was cancelled")
        default: .internal("\(error)")
        }
    }
}
