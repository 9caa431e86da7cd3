// What the shim needs to know about a request it relays: which task method, for which task.
// Only the task service's own methods are interpreted; anything else is opaque.

public struct TaskCall: Sendable, Equatable {
    public static let serviceV2 = "containerd.task.v2.Task"
    public static let serviceV3 = "containerd.task.v3.Task"

    public var service: String
    public var method: String
    /// True for containerd.task.v2.Task / v3.Task.
    public var isTaskService: Bool
    public var id = ""
    public var execID = ""
    /// ShutdownRequest.now.
    public var shutdownNow = false
    /// Set for Create.
    public var create: CreateTaskRequest?

    /// The methods the shim interprets (all others are relayed without a look inside).
    static let interpretedMethods: Set<String> = [
        "Create", "Start", "Delete", "Wait", "State", "Kill", "Connect", "Pids", "Shutdown",
    ]

    /// Throws when the payload of an interpreted task method does not decode.
    public init(request: TTRPCRequest) throws(ProtoError) {
        service = request.service
        method = request.method
        isTaskService = service == Self.serviceV2 || service == Self.serviceV3
        guard isTaskService, Self.interpretedMethods.contains(method) else { return }
        if method == "Create" {
            let create = try CreateTaskRequest(decoding: request.payload)
            id = create.id
            self.create = create
        } else {
            let decoded = try TaskIDRequest(decoding: request.payload)
            id = decoded.id
            execID = decoded.execID
            shutdownNow = method == "Shutdown" && decoded.flag2
        }
    }

    /// A call the shim makes itself (its own Wait).
    public init(service: String = serviceV2, method: String, id: String) {
        self.service = service
        self.method = method
        isTaskService = true
        self.id = id
    }

    /// A task-service call on the task's init process (not an exec'd process).
    public func isInit(_ name: String) -> Bool {
        isTaskService && method == name && execID.isEmpty
    }
}
