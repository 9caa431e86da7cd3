// Hand-written companions to the generated messages: the ttrpc service and method strings of each
// service, typed so a caller cannot pair a method with the wrong message types. protoc-gen-swift
// generates messages only, not services; this file is their service side.
//
// Usage with WasmletTTRPC (this module does not depend on it):
//     let m = WasmletRuntimeAPI.create
//     let reply = try await client.call(service: m.service, method: m.method,
//                                       request: req, responseType: m.responseType)

import SwiftProtobuf

/// One unary rpc: the ttrpc `service` and `method` strings and the message types it exchanges.
public struct RPCMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable,
    CustomStringConvertible
{
    /// Fully qualified service name, e.g. "wasmlet.v1.Runtime".
    public let service: String
    /// Bare method name, e.g. "Create".
    public let method: String

    public init(service: String, method: String) {
        self.service = service
        self.method = method
    }

    public var requestType: Request.Type { Request.self }
    public var responseType: Response.Type { Response.self }
    public var description: String { "\(service)/\(method)" }
}

/// `service Runtime` of wasmlet/v1/runtime.proto: the API of `wasmletd`.
public enum WasmletRuntimeAPI {
    public static let serviceName = "wasmlet.v1.Runtime"
    /// The value `VersionResponse.api_version` carries.
    public static let apiVersion = "wasmlet.v1"

    public static let create = RPCMethod<Wasmlet_V1_CreateRequest, Wasmlet_V1_CreateResponse>(
        service: serviceName, method: "Create")
    public static let start = RPCMethod<Wasmlet_V1_StartRequest, Wasmlet_V1_StartResponse>(
        service: serviceName, method: "Start")
    public static let wait = RPCMethod<Wasmlet_V1_WaitRequest, Wasmlet_V1_WaitResponse>(
        service: serviceName, method: "Wait")
    public static let kill = RPCMethod<Wasmlet_V1_KillRequest, Wasmlet_V1_KillResponse>(
        service: serviceName, method: "Kill")
    public static let delete = RPCMethod<Wasmlet_V1_DeleteRequest, Wasmlet_V1_DeleteResponse>(
        service: serviceName, method: "Delete")
    public static let inspect = RPCMethod<Wasmlet_V1_InspectRequest, Wasmlet_V1_InspectResponse>(
        service: serviceName, method: "Inspect")
    public static let list = RPCMethod<Wasmlet_V1_ListRequest, Wasmlet_V1_ListResponse>(
        service: serviceName, method: "List")
    public static let stats = RPCMethod<Wasmlet_V1_StatsRequest, Wasmlet_V1_StatsResponse>(
        service: serviceName, method: "Stats")
    public static let version = RPCMethod<Wasmlet_V1_VersionRequest, Wasmlet_V1_VersionResponse>(
        service: serviceName, method: "Version")
}

/// `service Task` of containerd's runtime v2 shim (containerd/runtime/v2/task/shim.proto).
public enum ContainerdTaskAPI {
    /// The name containerd 1.x (and 2.x for version-2 shims) calls.
    public static let serviceNameV2 = "containerd.task.v2.Task"
    /// The name containerd 2.x uses for version-3 shims; same messages.
    public static let serviceNameV3 = "containerd.task.v3.Task"
    /// Request metadata key under which containerd sends the namespace.
    public static let namespaceMetadataKey = "containerd-namespace-ttrpc"

    public typealias Empty = Google_Protobuf_Empty

    public static let state = RPCMethod<Containerd_Task_V2_StateRequest, Containerd_Task_V2_StateResponse>(
        service: serviceNameV2, method: "State")
    public static let create = RPCMethod<Containerd_Task_V2_CreateTaskRequest, Containerd_Task_V2_CreateTaskResponse>(
        service: serviceNameV2, method: "Create")
    public static let start = RPCMethod<Containerd_Task_V2_StartRequest, Containerd_Task_V2_StartResponse>(
        service: serviceNameV2, method: "Start")
    public static let delete = RPCMethod<Containerd_Task_V2_DeleteRequest, Containerd_Task_V2_DeleteResponse>(
        service: serviceNameV2, method: "Delete")
    public static let pids = RPCMethod<Containerd_Task_V2_PidsRequest, Containerd_Task_V2_PidsResponse>(
        service: serviceNameV2, method: "Pids")
    public static let pause = RPCMethod<Containerd_Task_V2_PauseRequest, Empty>(
        service: serviceNameV2, method: "Pause")
    public static let resume = RPCMethod<Containerd_Task_V2_ResumeRequest, Empty>(
        service: serviceNameV2, method: "Resume")
    public static let checkpoint = RPCMethod<Containerd_Task_V2_CheckpointTaskRequest, Empty>(
        service: serviceNameV2, method: "Checkpoint")
    public static let kill = RPCMethod<Containerd_Task_V2_KillRequest, Empty>(
        service: serviceNameV2, method: "Kill")
    public static let exec = RPCMethod<Containerd_Task_V2_ExecProcessRequest, Empty>(
        service: serviceNameV2, method: "Exec")
    public static let resizePty = RPCMethod<Containerd_Task_V2_ResizePtyRequest, Empty>(
        service: serviceNameV2, method: "ResizePty")
    public static let closeIO = RPCMethod<Containerd_Task_V2_CloseIORequest, Empty>(
        service: serviceNameV2, method: "CloseIO")
    public static let update = RPCMethod<Containerd_Task_V2_UpdateTaskRequest, Empty>(
        service: serviceNameV2, method: "Update")
    public static let wait = RPCMethod<Containerd_Task_V2_WaitRequest, Containerd_Task_V2_WaitResponse>(
        service: serviceNameV2, method: "Wait")
    public static let stats = RPCMethod<Containerd_Task_V2_StatsRequest, Containerd_Task_V2_StatsResponse>(
        service: serviceNameV2, method: "Stats")
    public static let connect = RPCMethod<Containerd_Task_V2_ConnectRequest, Containerd_Task_V2_ConnectResponse>(
        service: serviceNameV2, method: "Connect")
    public static let shutdown = RPCMethod<Containerd_Task_V2_ShutdownRequest, Empty>(
        service: serviceNameV2, method: "Shutdown")
}

/// containerd's ttrpc events service, which a shim calls at `$TTRPC_ADDRESS` to publish events.
public enum ContainerdEventsAPI {
    public static let serviceName = "containerd.services.events.ttrpc.v1.Events"
    public static let forward = RPCMethod<Containerd_Services_Events_Ttrpc_V1_ForwardRequest, Google_Protobuf_Empty>(
        service: serviceName, method: "Forward")

    /// Envelope topics (doc §6).
    public enum Topic {
        public static let taskCreate = "/tasks/create"
        public static let taskStart = "/tasks/start"
        public static let taskExit = "/tasks/exit"
        public static let taskDelete = "/tasks/delete"
        public static let taskOOM = "/tasks/oom"
    }
}

extension Google_Protobuf_Any {
    /// Packs `message` the way containerd's typeurl does for its own types: `type_url` is the bare
    /// full message name ("containerd.events.TaskExit", "io.containerd.cgroups.v1.Metrics"), with
    /// no "type.googleapis.com/" prefix and no leading slash (SwiftProtobuf's own
    /// `init(message:typePrefix:)` would add one).
    public init(containerdPacking message: some SwiftProtobuf.Message) throws {
        self.init()
        self.typeURL = type(of: message).protoMessageName
        self.value = try message.serializedData()
    }
}
