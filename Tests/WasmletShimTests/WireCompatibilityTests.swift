// The hand-written encoders checked against the generated SwiftProtobuf messages: if a field
// number or wire type were wrong, the real decoders would disagree.

import Foundation
import SwiftProtobuf
import Testing
import WasmletAPI
import WasmletConventions
import WasmletTTRPC

@testable import WasmletShim

@Suite struct WireCompatibilityTests {
    @Test func appendedMetadataDecodesWithTheRealRequest() throws {
        var original = Ttrpc_Request()
        original.service = "containerd.task.v2.Task"
        original.method = "Create"
        original.payload = Data([1, 2, 3, 0xFF])
        original.timeoutNano = 7_000_000_000
        var namespace = Ttrpc_KeyValue()
        namespace.key = "containerd-namespace-ttrpc"
        namespace.value = "k8s.io"
        original.metadata = [namespace]
        let bytes: [UInt8] = try original.serializedBytes()

        let entries = ShimMetadata.entries(
            pid: 4242, namespace: "k8s.io", group: "sandbox-1", ttrpcAddress: "/run/containerd/containerd.sock.ttrpc")
        let extended = ShimMetadata.appending(ShimMetadata.encode(entries), to: bytes)
        let decoded = try Ttrpc_Request(serializedBytes: extended)
        #expect(decoded.service == original.service)
        #expect(decoded.method == original.method)
        #expect(decoded.payload == original.payload)
        #expect(decoded.timeoutNano == original.timeoutNano)
        #expect(decoded.metadata.map { [$0.key, $0.value] } == [
            ["containerd-namespace-ttrpc", "k8s.io"],
            ["wasmlet-shim-pid", "4242"],
            ["wasmlet-shim-namespace", "k8s.io"],
            ["wasmlet-shim-group", "sandbox-1"],
            ["wasmlet-shim-ttrpc-address", "/run/containerd/containerd.sock.ttrpc"],
        ])
        // And the shim's own decoder reads the generated encoder's bytes.
        let mine = try TTRPCRequest(decoding: extended)
        #expect(mine.payload == [1, 2, 3, 0xFF])
        #expect(mine.metadata.count == 5)
    }

    @Test func metadataKeyNames() {
        #expect(ShimMetadataKey.shimPID == "wasmlet-shim-pid")
        #expect(ShimMetadataKey.namespace == "wasmlet-shim-namespace")
        #expect(ShimMetadataKey.group == "wasmlet-shim-group")
        #expect(ShimMetadataKey.ttrpcAddress == "wasmlet-shim-ttrpc-address")
        #expect(ShimMetadataKey.cleanup == "wasmlet-shim-cleanup")
    }

    @Test func responsesRoundTripWithTheRealMessages() throws {
        let error = TTRPCResponse.error(StatusCode.unavailable, "wasmletd is not running")
        let real = try Ttrpc_Response(serializedBytes: error.encoded())
        #expect(real.status.code == 14)
        #expect(real.status.message == "wasmletd is not running")

        var generated = Ttrpc_Response()
        generated.status.code = -3  // negative codes must survive the int32 sign extension
        generated.status.message = "m"
        generated.payload = Data([9, 8])
        let mine = try TTRPCResponse(decoding: try generated.serializedBytes())
        #expect(mine == TTRPCResponse(code: -3, message: "m", payload: [9, 8]))

        let ok = try Ttrpc_Response(serializedBytes: TTRPCResponse.ok([5]).encoded())
        #expect(ok.status.code == 0)
        #expect(ok.payload == Data([5]))
    }

    @Test func exitEventDecodesAsForwardRequestAndTaskExit() throws {
        let event = ExitEvent(
            containerID: "c1", pid: 777, exit: TaskExit(status: 137, exitedAt: Timestamp(seconds: 1_700_000_000, nanos: 5)))
        let request = EventPublisher.forwardRequest(event, namespace: "k8s.io")
        #expect(request.service == "containerd.services.events.ttrpc.v1.Events")
        #expect(request.method == "Forward")
        #expect(request.metadata == [MetadataEntry("containerd-namespace-ttrpc", "k8s.io")])

        let forward = try Containerd_Services_Events_Ttrpc_V1_ForwardRequest(serializedBytes: request.payload)
        #expect(forward.envelope.namespace == "k8s.io")
        #expect(forward.envelope.topic == "/tasks/exit")
        #expect(forward.envelope.hasTimestamp)
        #expect(forward.envelope.event.typeURL == "containerd.events.TaskExit")
        let exit = try Containerd_Events_TaskExit(serializedBytes: forward.envelope.event.value)
        #expect(exit.containerID == "c1")
        #expect(exit.id == "c1")
        #expect(exit.pid == 777)
        #expect(exit.exitStatus == 137)
        #expect(exit.exitedAt.seconds == 1_700_000_000)
        #expect(exit.exitedAt.nanos == 5)
        // The full ttrpc request decodes too.
        let envelope = try Ttrpc_Request(serializedBytes: request.encoded())
        #expect(envelope.metadata.first?.value == "k8s.io")
    }

    @Test func taskMessagesMatchTheGeneratedOnes() throws {
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "t1"
        create.bundle = "/run/b"
        create.stdout = "/fifo"
        var mount = Containerd_Types_Mount()
        mount.type = "overlay"
        mount.source = "overlay"
        mount.target = ""
        mount.options = ["lowerdir=/l", "", "upperdir=/u"]
        create.rootfs = [mount]
        let decoded = try CreateTaskRequest(decoding: try create.serializedBytes())
        #expect(decoded == CreateTaskRequest(
            id: "t1", bundle: "/run/b",
            rootfs: [MountSpec(type: "overlay", source: "overlay", options: ["lowerdir=/l", "", "upperdir=/u"])]))
        #expect(try Containerd_Task_V2_CreateTaskRequest(serializedBytes: decoded.encoded()).rootfs == [mount])

        let exit = TaskExit(status: 3, exitedAt: Timestamp(seconds: 10, nanos: 20))
        let wait = try Containerd_Task_V2_WaitResponse(serializedBytes: TaskResponses.wait(exit))
        #expect(wait.exitStatus == 3 && wait.exitedAt.seconds == 10 && wait.exitedAt.nanos == 20)
        #expect(TaskResponses.decodeWait(try wait.serializedBytes()) == exit)

        let state = try Containerd_Task_V2_StateResponse(
            serializedBytes: TaskResponses.state(id: "t1", bundle: "/b", pid: 9, status: TaskStatus.stopped, exit: exit))
        #expect(state.id == "t1" && state.bundle == "/b" && state.pid == 9)
        #expect(state.status == .stopped && state.exitStatus == 3 && state.exitedAt.nanos == 20)

        let delete = try Containerd_Task_V2_DeleteResponse(serializedBytes: TaskResponses.delete(pid: 9, exit: exit))
        #expect(delete.pid == 9 && delete.exitStatus == 3 && delete.exitedAt.seconds == 10)

        let connect = try Containerd_Task_V2_ConnectResponse(
            serializedBytes: TaskResponses.connect(shimPID: 1, taskPID: 2, version: "v"))
        #expect(connect.shimPid == 1 && connect.taskPid == 2 && connect.version == "v")

        let pids = try Containerd_Task_V2_PidsResponse(serializedBytes: TaskResponses.pids([4, 5]))
        #expect(pids.processes.map(\.pid) == [4, 5])

        var shutdown = Containerd_Task_V2_ShutdownRequest()
        shutdown.id = "t1"
        shutdown.now = true
        let parsed = try TaskIDRequest(decoding: try shutdown.serializedBytes())
        #expect(parsed.id == "t1" && parsed.flag2)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "t1"
        start.execID = "e"
        #expect(try TaskIDRequest(decoding: try start.serializedBytes()) == TaskIDRequest(id: "t1", execID: "e"))
    }
}
