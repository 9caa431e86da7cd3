import WasmletRuntime

/// Why a request was not answered by its guest, with the status it gets (the table in the
/// README). Every such answer has a short plain-text body that names the reason.
enum HTTPFailure: Sendable, Equatable {
    case guestTrapped(String)
    case memoryDenied
    case outOfFuel
    case guestExited(Int32)
    case guestFailedToStart(String)
    case deadlinePassed(UInt64)
    case serviceStopping
    case admissionRefused(String)
    case overCapacity
    case queueTimeout(UInt64)
    case bodyTooLarge(UInt64)
    case headersTooLarge(UInt32)
    case malformedRequest(String)
    case notCGI(String)
    case responseTooLarge(UInt64)
    case noRoute(String)

    var status: Int {
        switch self {
        case .guestTrapped, .memoryDenied, .outOfFuel, .guestExited, .guestFailedToStart: return 500
        case .deadlinePassed: return 504
        case .serviceStopping, .admissionRefused, .overCapacity, .queueTimeout: return 503
        case .bodyTooLarge: return 413
        case .headersTooLarge: return 431
        case .malformedRequest: return 400
        case .notCGI, .responseTooLarge: return 502
        case .noRoute: return 404
        }
    }

    /// The metrics label.
    var reason: String {
        switch self {
        case .guestTrapped: return "trap"
        case .memoryDenied: return "memory"
        case .outOfFuel: return "fuel"
        case .guestExited: return "exit_code"
        case .guestFailedToStart: return "start_failed"
        case .deadlinePassed: return "deadline"
        case .serviceStopping: return "stopping"
        case .admissionRefused: return "admission"
        case .overCapacity: return "queue_full"
        case .queueTimeout: return "queue_timeout"
        case .bodyTooLarge: return "body_too_large"
        case .headersTooLarge: return "headers_too_large"
        case .malformedRequest: return "malformed"
        case .notCGI: return "not_cgi"
        case .responseTooLarge: return "response_too_large"
        case .noRoute: return "no_route"
        }
    }

    var message: String {
        switch self {
        case .guestTrapped(let trap): return "the guest trapped: \(trap)"
        case .memoryDenied: return "the guest ran out of memory"
        case .outOfFuel: return "the guest ran out of fuel"
        case .guestExited(let code): return "the guest exited with code \(code)"
        case .guestFailedToStart(let why): return "the guest could not start: \(why)"
        case .deadlinePassed(let ms): return "the request's deadline of \(ms) ms passed"
        case .serviceStopping: return "the service is stopping"
        case .admissionRefused(let why): return "the node cannot run the request now: \(why)"
        case .overCapacity: return "the service is at its concurrency and queue limits"
        case .queueTimeout(let ms): return "the request waited \(ms) ms in the service's queue"
        case .bodyTooLarge(let limit): return "the request body is over the limit of \(limit) bytes"
        case .headersTooLarge(let limit): return "the request headers are over the limit of \(limit) bytes"
        case .malformedRequest(let why): return "malformed HTTP request: \(why)"
        case .notCGI(let why): return "the guest's output is not a CGI response: \(why)"
        case .responseTooLarge(let limit): return "the guest's output is over the limit of \(limit) bytes"
        case .noRoute(let path): return "no route of this service matches \(path)"
        }
    }

    /// 503s say when to come back; the others do not.
    var retryAfterSeconds: Int? { status == 503 ? 1 : nil }
}

/// What the connection writes back for one request.
struct HTTPAnswer: Sendable {
    var status: Int
    var reason: String?
    var headers: [(name: String, value: String)]
    var body: ArraySlice<UInt8>
    var failure: HTTPFailure?

    init(_ response: CGIResponse) {
        status = response.status
        reason = response.reason
        headers = response.headers
        body = response.body
    }

    init(_ failure: HTTPFailure) {
        status = failure.status
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if let seconds = failure.retryAfterSeconds { headers.append(("Retry-After", String(seconds))) }
        body = ArraySlice(Array("\(failure.message)\n".utf8))
        self.failure = failure
    }

    /// The answer to a finished run: the guest's CGI response, or why there is none.
    init(_ outcome: RequestOutcome, limits: HTTPTriggerSpec, deadlineMilliseconds: UInt64) {
        let exit = outcome.exit
        if outcome.outputOverflowed {
            self.init(.responseTooLarge(limits.maxResponseBytes))
            return
        }
        switch exit.reason {
        case .exited where exit.code == 0:
            do {
                self.init(try CGIResponse.parse(outcome.stdout))
            } catch {
                self.init(.notCGI(error.explanation))
            }
        case _ where exit.memoryExhausted:
            self.init(.memoryDenied)
        case .exited, .daemonRestarted:
            self.init(.guestExited(exit.code))
        case .trapped:
            self.init(.guestTrapped(exit.message))
        case .outOfFuel:
            self.init(.outOfFuel)
        case .deadlineExceeded:
            self.init(.deadlinePassed(deadlineMilliseconds))
        case .killed:
            self.init(.serviceStopping)
        case .failedToStart:
            self.init(.guestFailedToStart(exit.message))
        }
    }
}
