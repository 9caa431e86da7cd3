// `start` under containerd 2.3's bootstrap protocol, and its fallbacks, with the real binary.
// Messages are built and read by field number as containerd's
// api/runtime/bootstrap/v1/bootstrap.proto defines them:
//   BootstrapParams{instance_id=1, namespace=2, log_level=3 enum, containerd_version=4,
//                   containerd_ttrpc_address=5, containerd_grpc_address=6, containerd_binary=7,
//                   extensions=8, optional socket_dir=9}
//   BootstrapResult{version=1 int32, address=2, protocol=3, capabilities=4, metadata=5}

import Foundation
import SwiftProtobuf
import Testing
import WasmletAPI

@testable import WasmletShim
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct BootstrapTests {
    private func params(_ h: ShimHarness, id: String, socketDir: String) -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, id)
        writer.string(2, h.namespace)
        writer.int32(3, -4)  // LOG_LEVEL_DEBUG
        writer.string(4, "2.3.0-test")
        writer.string(5, h.ttrpcAddress)
        writer.string(6, h.containerdAddress)
        writer.string(7, "/bin/false")
        writer.message(8) { $0.message(1) { $0.string(1, "types.containerd.io/some.Options") } }
        writer.string(9, socketDir)
        return writer.bytes
    }

    private func writeTemporary(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "wshim-stdin-\(UUID().uuidString)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The shim's environment with containerd's legacy variables gone, as they are to be removed.
    private func environmentWithoutLegacy(_ h: ShimHarness) -> [String: String] {
        h.environment.merging(["TTRPC_ADDRESS": "", "GRPC_ADDRESS": "", "NAMESPACE": ""]) { $1 }
    }

    @Test func paramsAloneStartTheShimAndAreAnsweredWithABootstrapResult() async throws {
        try await ShimHarness().run { h in
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            defer { Task { await daemon.stop() } }
            // socket_dir must win over $WASMLET_SHIM_SOCKET_DIR, which the harness still sets.
            let socketDir = h.directory + "/boot-s"
            let input = try writeTemporary(params(h, id: "t1", socketDir: socketDir))
            defer { unlink(input) }
            // No flags at all: the id, namespace and addresses must come from the params.
            let result = try await runProcess(
                shimBinaryPath, ["start"], environment: environmentWithoutLegacy(h), directory: h.bundle, stdin: input)
            #expect(result.status == 0, "start failed: \(result.stderr)")
            #expect(result.stderr.isEmpty)

            var reader = ProtoReader(Array(result.stdout))
            var answer: [Int: ProtoField] = [:]
            while let field = try reader.next() { answer[field.number] = field }
            #expect(answer[1]?.wireType == .varint && answer[1]?.value == 2)
            let expectedPath = socketDir + "/" + (try await sha256Hex(h.containerdAddress + "/" + h.namespace + "/t1"))
            let address = try #require(answer[2].map { reader.string($0) })
            #expect(address == "unix://" + expectedPath)
            #expect(answer[3].map { reader.string($0) } == "ttrpc")
            #expect(Set(answer.keys) == [1, 2, 3])

            let client = try await TaskClient.connect(address, namespace: h.namespace)
            let shimPID = Int32(try await client.call(API.connect, .with { $0.id = "t1" }).shimPid)
            defer { if processIsAlive(shimPID) { kill(shimPID, SIGKILL) } }
            let call = try #require(daemon.recorded("Connect").first)
            #expect(call.metadata["wasmlet-shim-namespace"] == h.namespace)
            #expect(call.metadata["wasmlet-shim-group"] == "t1")
            #expect(call.metadata["wasmlet-shim-ttrpc-address"] == h.ttrpcAddress)
            await client.close()

            // A shim killed outright leaves its socket; `delete` (which gets no params) must find
            // it in the socket_dir that `start` was given.
            kill(shimPID, SIGKILL)
            #expect(await eventually { !processIsAlive(shimPID) })
            #expect(FileManager.default.fileExists(atPath: expectedPath))
            let deleted = try await h.delete(id: "t1")
            #expect(deleted.status == 0, "delete failed: \(deleted.stderr)")
            #expect(!FileManager.default.fileExists(atPath: expectedPath))
        }
    }

    @Test func otherStdinKeepsThePlainAddressLine() async throws {
        try await ShimHarness().run { h in
            // containerd 2.0-2.2: runtime options (an Any) on stdin; an empty pipe; and params
            // naming another task than the flags do (not for this start).
            let options = try Google_Protobuf_Any.with {
                $0.typeURL = "types.containerd.io/some.Options"
                $0.value = Data([0x08, 0x01])
            }.serializedBytes() as [UInt8]
            let inputs: [(String, [UInt8])] = [
                ("runtime options", options), ("nothing", []),
                ("params of another task", params(h, id: "other", socketDir: h.directory + "/wrong")),
            ]
            for (round, (what, bytes)) in inputs.enumerated() {
                let input = try writeTemporary(bytes)
                defer { unlink(input) }
                let result = try await h.start(id: "t\(round)", stdin: input)
                #expect(result.status == 0, "\(what): \(result.stderr)")
                #expect(result.text == "unix://" + (try await h.expectedSocket(group: "t\(round)")) + "\n", "\(what)")
            }
        }
    }

    @Test func stdinHeldOpenWithoutDataDoesNotHangStart() async throws {
        try await ShimHarness().run { h in
            // A FIFO the test keeps open for writing and never writes to: no EOF ever comes.
            let fifo = h.directory + "/stdin.fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            let writer = open(fifo, O_RDWR | O_CLOEXEC)
            #expect(writer >= 0)
            defer { close(writer) }
            let result = try await h.start(id: "t1", stdin: fifo)  // runProcess's hang guard catches a hang
            #expect(result.status == 0, "start failed: \(result.stderr)")
            #expect(result.text == "unix://" + (try await h.expectedSocket(group: "t1")) + "\n")
        }
    }

    @Test func decodingAndMatching() throws {
        let h = try ShimHarness()
        defer { h.cleanup() }
        let decoded = try #require(BootstrapParams.decode(params(h, id: "t1", socketDir: "/run/s")))
        #expect(decoded.instanceID == "t1" && decoded.namespace == h.namespace)
        #expect(decoded.logLevel == -4 && decoded.debug)
        #expect(decoded.ttrpcAddress == h.ttrpcAddress && decoded.grpcAddress == h.containerdAddress)
        #expect(decoded.containerdBinary == "/bin/false" && decoded.socketDir == "/run/s")
        #expect(decoded.matches(id: "t1", namespace: h.namespace))
        #expect(decoded.matches(id: "", namespace: ""))
        #expect(!decoded.matches(id: "t2", namespace: h.namespace))
        #expect(!decoded.matches(id: "t1", namespace: "other"))
        // An unset socket_dir is absent, not empty.
        #expect(BootstrapParams.decode(ProtoWriter().bytes)?.socketDir == nil)
        // A string where the log level's varint belongs: not params.
        var wrong = ProtoWriter()
        wrong.string(3, "debug")
        #expect(BootstrapParams.decode(wrong.bytes) == nil)
    }
}
