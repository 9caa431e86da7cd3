import Dispatch
import Foundation
import SwiftProtobuf
import Testing
import WasmletTestSupport
@testable import WasmletTTRPC

/// Inline handlers: run on the event loop, answer at once or later from another thread, and
/// are told when their call is abandoned.
@Suite("ttrpc inline handlers")
struct InlineHandlerTests {
    @Test("answers at once, later from another thread, typed, and errors")
    func answers() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        var registry = TTRPCServiceRegistry()
        registry.registerInline(service: "test.Inline", method: "Now") { _, payload, respond in
            respond(.success(payload.reversed()))
            return nil
        }
        registry.registerInline(service: "test.Inline", method: "Later") { _, payload, respond in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) { respond(.success(payload + payload)) }
            return nil
        }
        registry.registerInline(
            service: "test.Inline", method: "Upper", request: Google_Protobuf_StringValue.self,
            response: Google_Protobuf_StringValue.self
        ) { _, request, respond in
            respond(.success(Google_Protobuf_StringValue(request.value.uppercased())))
            return nil
        }
        registry.registerInline(service: "test.Inline", method: "Fail") { _, _, respond in
            respond(.failure(TTRPCError(.failedPrecondition, "not now")))
            respond(.success([1]))  // a second answer is ignored
            return nil
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())

        #expect(try await client.call(service: "test.Inline", method: "Now", payload: [1, 2, 3]) == [3, 2, 1])
        // Concurrent calls on one connection, answered from other threads.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask {
                    let reply = try await client.call(service: "test.Inline", method: "Later", payload: [UInt8(index)])
                    #expect(reply == [UInt8(index), UInt8(index)])
                }
            }
            try await group.waitForAll()
        }
        let upper = try await client.call(
            service: "test.Inline", method: "Upper", request: Google_Protobuf_StringValue("wasm"),
            responseType: Google_Protobuf_StringValue.self)
        #expect(upper.value == "WASM")
        let invalid = await ttrpcError {
            _ = try await client.call(service: "test.Inline", method: "Upper", payload: [0x0F, 0xFF, 0xFF])
        }
        #expect(invalid?.code == .invalidArgument)
        let failed = await ttrpcError { _ = try await client.call(service: "test.Inline", method: "Fail", payload: []) }
        #expect(failed == TTRPCError(.failedPrecondition, "not now"))
        // The connection is still in order after the ignored second answer.
        #expect(try await client.call(service: "test.Inline", method: "Now", payload: [7]) == [7])
        await client.close()
        await server.shutdown()
    }

    @Test("an abandoned call runs the handler's cancel closure: deadline and closed connection")
    func abandoned() async throws {
        let dir = try TemporaryDirectory(prefix: "wasmlet-ttrpc")
        defer { dir.remove() }
        let cancelled = Shared(0)
        var registry = TTRPCServiceRegistry()
        registry.registerInline(service: "test.Inline", method: "Never") { _, _, _ in
            { cancelled.update { $0 += 1 } }
        }
        let server = try await TTRPCServer.bind(unixSocketPath: dir.socket(), registry: registry)
        let client = try await TTRPCClient.connect(unixSocketPath: dir.socket())
        let error = await ttrpcError {
            _ = try await client.call(service: "test.Inline", method: "Never", payload: [], timeout: .milliseconds(100))
        }
        #expect(error?.code == .deadlineExceeded)
        #expect(await eventually(every: .milliseconds(1)) { cancelled.value == 1 })

        let pending = Task { try await client.call(service: "test.Inline", method: "Never", payload: []) }
        try await Task.sleep(for: .milliseconds(100))
        await client.close()
        _ = await ttrpcError { _ = try await pending.value }
        #expect(await eventually(every: .milliseconds(1)) { cancelled.value == 2 })
        await server.shutdown()
    }
}
