import Glibc

/// What makes an instance a service: the host serves HTTP on the instance's listeners and runs
/// a fresh instance of its module for every request (see WasmletHTTPTrigger). The runtime only
/// keeps these settings and hands them to its ``ServingHost``; it knows nothing of HTTP.
///
/// The instance's own `limits` (fuel, memory, deadline) apply to each request's run.
public struct HTTPTriggerSpec: Sendable, Equatable, Codable {
    /// Requests running at once; more wait in the queue.
    public var maxConcurrency: UInt32
    /// Requests that may wait for a free slot; past it a request is answered 503.
    public var queueLength: UInt32
    /// How long a request may wait in the queue before it is answered 503.
    public var queueTimeoutMilliseconds: UInt64
    /// Largest request body (413 past it).
    public var maxBodyBytes: UInt64
    /// Largest request head: request line and headers (431 past it).
    public var maxHeaderBytes: UInt32
    /// Largest guest output, CGI headers included (502 past it).
    public var maxResponseBytes: UInt64
    /// A connection must deliver each whole request within this time of its first byte (or of
    /// the previous response): a slow client is closed before it can hold a guest.
    public var requestReadTimeoutMilliseconds: UInt64
    /// The route table (WAGI's `modules.toml`), tried in order, the first match winning; a
    /// request that matches none is answered 404. Empty: the instance's own module serves
    /// `/...`, every path.
    public var routes: [HTTPRouteSpec]

    public static let defaultDeadlineMilliseconds: UInt64 = 30_000
    /// Twice the node's cores (2 to 64): per-request runs are CPU-bound, and more of them at
    /// once only share the cores thinner (measured: 64 at once on two cores gave half the
    /// requests/s and a p99 of 0.6 s, 2 to 8 at once the full rate; BENCHMARKS.md).
    public static let defaultMaxConcurrency = UInt32(max(2, min(64, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))))
    public static let maxRoutes = 256

    public init(
        maxConcurrency: UInt32 = HTTPTriggerSpec.defaultMaxConcurrency, queueLength: UInt32 = 1024, queueTimeoutMilliseconds: UInt64 = 5_000,
        maxBodyBytes: UInt64 = 64 << 20, maxHeaderBytes: UInt32 = 16 << 10, maxResponseBytes: UInt64 = 64 << 20,
        requestReadTimeoutMilliseconds: UInt64 = 10_000, routes: [HTTPRouteSpec] = []
    ) {
        self.routes = routes
        self.maxConcurrency = maxConcurrency
        self.queueLength = queueLength
        self.queueTimeoutMilliseconds = queueTimeoutMilliseconds
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxResponseBytes = maxResponseBytes
        self.requestReadTimeoutMilliseconds = requestReadTimeoutMilliseconds
    }

    /// The first setting that cannot work, if any.
    func validationError() -> String? {
        if maxConcurrency == 0 { return "the HTTP trigger's concurrency must be positive" }
        if maxBodyBytes > UInt64(Int32.max) { return "the HTTP trigger's body limit may be at most 2 GiB" }
        if maxResponseBytes == 0 || maxResponseBytes > UInt64(Int32.max) { return "the HTTP trigger's response limit must be 1 byte to 2 GiB" }
        if maxHeaderBytes < 256 { return "the HTTP trigger's header limit must be at least 256 bytes" }
        if requestReadTimeoutMilliseconds == 0 { return "the HTTP trigger's request read timeout must be positive" }
        if routes.count > Self.maxRoutes { return "at most \(Self.maxRoutes) routes per service" }
        for route in routes {
            if let problem = HTTPRouteSpec.problem(route.route) { return "route \"\(route.route)\": \(problem)" }
        }
        return nil
    }

    private enum CodingKeys: String, CodingKey {
        case maxConcurrency, queueLength, queueTimeoutMilliseconds, maxBodyBytes, maxHeaderBytes, maxResponseBytes
        case requestReadTimeoutMilliseconds, routes
    }

    /// Records written before route tables existed have no `routes`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        maxConcurrency = try container.decode(UInt32.self, forKey: .maxConcurrency)
        queueLength = try container.decode(UInt32.self, forKey: .queueLength)
        queueTimeoutMilliseconds = try container.decode(UInt64.self, forKey: .queueTimeoutMilliseconds)
        maxBodyBytes = try container.decode(UInt64.self, forKey: .maxBodyBytes)
        maxHeaderBytes = try container.decode(UInt32.self, forKey: .maxHeaderBytes)
        maxResponseBytes = try container.decode(UInt64.self, forKey: .maxResponseBytes)
        requestReadTimeoutMilliseconds = try container.decode(UInt64.self, forKey: .requestReadTimeoutMilliseconds)
        routes = try container.decodeIfPresent([HTTPRouteSpec].self, forKey: .routes) ?? []
    }
}

/// One row of a service's route table, as WAGI's `modules.toml` writes it: `/api/...` matches
/// `/api` and every path under it, `/...` every path, and a route without the `/...` tail only
/// itself. A matching request runs the module `moduleDigest` (loaded before the Create).
public struct HTTPRouteSpec: Sendable, Equatable, Codable {
    public var route: String
    public var moduleDigest: String

    public init(route: String, moduleDigest: String) {
        self.route = route
        self.moduleDigest = moduleDigest
    }

    /// What is wrong with a route as written, if anything.
    public static func problem(_ route: String) -> String? {
        guard route.hasPrefix("/") else { return "a route starts with /" }
        if route.utf8.count > 1024 { return "longer than 1,024 bytes" }
        if route.contains("?") || route.contains("#") { return "a route is a path, without ? or #" }
        if route.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F }) {
            return "spaces and control characters are not allowed"
        }
        let base = route.hasSuffix("/...") ? String(route.dropLast(4)) : route
        if base.contains("...") { return "... may only end a route, as /..." }
        return nil
    }
}

/// An instance with an HTTP trigger, as its serving host gets it at start.
public struct ServedInstance: Sendable {
    public let key: InstanceKey
    public let spec: InstanceSpec
    public let trigger: HTTPTriggerSpec
    /// Duplicates of the instance's listening sockets, non-blocking, in the spec's order. The
    /// host owns them and closes them when it stops (or when `startServing` throws).
    public let listenerDescriptors: [Int32]
    public let listeners: [BoundListener]
    /// The service's stderr (its spec's `stdio.stderr`, opened), where the requests' stderr
    /// lines go; nil when the spec names none, and the host logs them itself.
    public let log: ServiceLog?
    /// Where the host runs each request's guest.
    public let runs: ServiceRuns
}

/// What serves instances that have an HTTP trigger (the daemon's HTTP trigger).
public protocol ServingHost: Sendable {
    /// Starts serving; the instance is running from here until it is killed. Throws when it
    /// cannot serve, and the instance then exits with reason failed_to_start.
    func startServing(_ instance: ServedInstance) throws -> any ServingSession
}

/// One served instance's service while it runs.
public protocol ServingSession: Sendable {
    /// Stops at once: no more connections or requests, running requests killed. Must not block.
    func stop()
    /// Read under the runtime's lock for every snapshot: quick, and no call into the runtime.
    var statistics: ServingStatistics { get }
}

/// A running service's numbers, for Inspect and List.
public struct ServingStatistics: Sendable, Equatable {
    /// Requests received since the service started.
    public var requests: UInt64
    /// Requests whose guest runs now, and requests waiting for a slot.
    public var running: Int
    public var queued: Int

    public init(requests: UInt64, running: Int, queued: Int) {
        self.requests = requests
        self.running = running
        self.queued = queued
    }
}

/// One request's run, as the HTTP trigger asks for it.
public struct RequestInput: Sendable {
    /// argv, argv[0] included.
    public var args: [String]
    /// The whole environment of this run (nothing is added from the service's own).
    public var environment: [String: String]
    /// stdin: end-of-file after these bytes.
    public var body: [UInt8]
    /// Most stdout bytes kept; a write past it fails with EFBIG, and the outcome says so.
    public var maxOutputBytes: Int
    /// Each line the guest writes to stderr, without its newline.
    public var stderrLine: @Sendable ([UInt8]) -> Void
    /// The module to run, one of the service's routes' (nil: the instance's own).
    public var moduleDigest: String?

    public init(
        args: [String], environment: [String: String], body: [UInt8], maxOutputBytes: Int,
        stderrLine: @escaping @Sendable ([UInt8]) -> Void, moduleDigest: String? = nil
    ) {
        self.moduleDigest = moduleDigest
        self.args = args
        self.environment = environment
        self.body = body
        self.maxOutputBytes = maxOutputBytes
        self.stderrLine = stderrLine
    }
}

/// How one request's run ended.
public struct RequestOutcome: Sendable {
    public var exit: ExitRecord
    /// What the guest wrote to stdout (empty if its thread had to be abandoned after a kill).
    public var stdout: [UInt8]
    /// Whether the guest tried to write more than `maxOutputBytes`.
    public var outputOverflowed: Bool
}

/// Stops one request's run; see ``ServiceRuns/run(_:completion:)``.
public final class RequestHandle: Sendable {
    private let stopper: @Sendable () -> Void

    init(stopper: @escaping @Sendable () -> Void) { self.stopper = stopper }

    /// Kills the run (exit 137, reason killed); a no-op once it has ended.
    public func kill() { stopper() }
}

extension ListeningSocket {
    /// A descriptor of the same socket for a serving host, which owns it.
    func duplicate() throws(RuntimeError) -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw RuntimeError.resourceExhausted("cannot duplicate a listener: \(String(cString: strerror(errno)))") }
        return copy
    }
}
