/// Identifies an instance: ids are unique within a namespace.
public struct InstanceKey: Hashable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var id: String

    public init(namespace: String, id: String) {
        self.namespace = namespace
        self.id = id
    }

    public var description: String { "\(namespace)/\(id)" }
}

/// A directory the guest may reach, mapped from a host path to a guest path.
public struct PreopenSpec: Sendable, Equatable, Codable {
    public var guestPath: String
    public var hostPath: String
    public var readOnly: Bool

    public init(guestPath: String, hostPath: String, readOnly: Bool = false) {
        self.guestPath = guestPath
        self.hostPath = hostPath
        self.readOnly = readOnly
    }
}

/// Where a guest's standard streams go. `nil` means nothing: reads see EOF, writes are dropped.
public struct StdioSpec: Sendable, Equatable, Codable {
    /// A regular file or FIFO to read stdin from.
    public var stdin: String?
    /// A regular file (appended to, created if missing) or FIFO for stdout.
    public var stdout: String?
    /// A regular file (appended to, created if missing) or FIFO for stderr.
    public var stderr: String?

    public init(stdin: String? = nil, stdout: String? = nil, stderr: String? = nil) {
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Per-instance limits. `nil` means "use the runtime's default" for the memory cap and stack,
/// and "none" for fuel and the deadline.
public struct InstanceLimits: Sendable, Equatable, Codable {
    /// Cap on linear memory in bytes, enforced at instantiation and on every `memory.grow`.
    public var memoryBytes: UInt64?
    /// Fuel budget (about one unit per wasm operator). Metering is always on, so consumption is
    /// reported even without a budget.
    public var fuel: UInt64?
    /// Wall-clock deadline in milliseconds, counted from start.
    public var timeoutMilliseconds: UInt64?
    /// Interpreter stack size in bytes (WasmKit's default is 512 KiB).
    public var stackBytes: UInt64?
    /// Most connections the guest may hold open at once, over all its listeners (nil: the
    /// runtime's default, 1,024). Past it, accept is not performed: new connections wait in
    /// the kernel's backlog, a non-blocking accept answers EAGAIN, a blocking one EMFILE, and
    /// poll does not report the listener readable.
    public var maxConnections: UInt32?

    public init(
        memoryBytes: UInt64? = nil, fuel: UInt64? = nil, timeoutMilliseconds: UInt64? = nil, stackBytes: UInt64? = nil,
        maxConnections: UInt32? = nil
    ) {
        self.memoryBytes = memoryBytes
        self.fuel = fuel
        self.timeoutMilliseconds = timeoutMilliseconds
        self.stackBytes = stackBytes
        self.maxConnections = maxConnections
    }
}

/// Everything needed to create an instance of an already loaded module.
public struct InstanceSpec: Sendable {
    public var key: InstanceKey
    public var labels: [String: String]
    /// `sha256:<hex>` of a module loaded with ``WasmletRuntime/loadModule(path:)`` or `bytes:`.
    public var moduleDigest: String
    /// argv as the guest sees it, including argv[0].
    public var args: [String]
    /// The guest's environment: only this, never anything from the host process.
    public var environment: [String: String]
    public var preopens: [PreopenSpec]
    /// The guest's working directory; WASI preview1 has no cwd of its own, so wasi-libc reads
    /// it from the `PWD` variable, which is set from this when given.
    public var cwd: String?
    public var stdio: StdioSpec
    public var limits: InstanceLimits
    /// TCP listeners bound and listening at create (a bind failure fails the create). The
    /// guest finds them after its preopened directories, at fds 3+dirs, 3+dirs+1, ... in this
    /// order, and their numbers in `WASMLET_LISTEN_FDS`.
    public var listeners: [ListenerSpec]
    /// Listeners bound by someone else (see ``InheritedListener``), which the runtime adopts
    /// at create: the guest finds them right after `listeners`, in this order, exactly as if
    /// the runtime had bound them, and the runtime closes them at exit, kill, delete or a
    /// failed create. Never persisted: a descriptor does not survive a restart.
    public var inheritedListeners: [InheritedListener]
    /// Set for a service: the runtime's ``ServingHost`` serves HTTP on `listeners` and runs a
    /// fresh instance of the module per request, under `limits`; `_start` never runs for the
    /// instance itself, and no thread is kept for it.
    public var httpTrigger: HTTPTriggerSpec?

    public init(
        key: InstanceKey, labels: [String: String] = [:], moduleDigest: String, args: [String] = [],
        environment: [String: String] = [:], preopens: [PreopenSpec] = [], cwd: String? = nil,
        stdio: StdioSpec = StdioSpec(), limits: InstanceLimits = InstanceLimits(), listeners: [ListenerSpec] = [],
        inheritedListeners: [InheritedListener] = [], httpTrigger: HTTPTriggerSpec? = nil
    ) {
        self.httpTrigger = httpTrigger
        self.listeners = listeners
        self.inheritedListeners = inheritedListeners
        self.key = key
        self.labels = labels
        self.moduleDigest = moduleDigest
        self.args = args
        self.environment = environment
        self.preopens = preopens
        self.cwd = cwd
        self.stdio = stdio
        self.limits = limits
    }
}
