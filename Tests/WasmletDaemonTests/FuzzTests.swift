import Foundation
import Testing
import WasmletAPI
import WasmletTTRPC

extension DaemonEndToEndTests {
    /// Garbage and oversized frames: each gets the right answer or only its own connection is
    /// closed; the daemon survives and new clients are served.
    @Suite struct Fuzz {
        @Test func garbageAndOversizedFramesOnlyAffectTheirConnection() async throws {
            let directory = try TemporaryDirectory()
            let daemon = try await DaemonProcess(directory: directory)
            defer { daemon.killAndReap() }
            // A client connected before the abuse must keep working through it.
            let bystander = try await daemon.client()

            // 1. Oversized: a 5 MiB frame is answered RESOURCE_EXHAUSTED on its stream and the
            //    same connection keeps working.
            let big = try RawConnection(daemon.socketPath)
            let payload = [UInt8](repeating: 0x41, count: 5 << 20)
            #expect(big.write(frame(streamID: 1, type: 1, payload: payload)))
            guard case .frame(let stream, let type, let body) = big.readFrame(timeoutMilliseconds: 20_000) else {
                Issue.record("no answer to an oversized frame")
                return
            }
            #expect(stream == 1)
            #expect(type == 2)
            #expect(try decodeResponse(body).code == 8)
            #expect(big.write(try versionRequestFrame(streamID: 3)))
            if case .frame(let stream, _, let body) = big.readFrame() {
                #expect(stream == 3)
                #expect(try decodeResponse(body).code == 0)
            } else {
                Issue.record("connection unusable after an oversized frame")
            }

            // 2. A 5 MiB length header followed by a hang-up.
            let header = try RawConnection(daemon.socketPath)
            header.write(frame(streamID: 5, type: 1, payload: [], declaredLength: 5 << 20))
            header.write([UInt8](repeating: 0, count: 1000))

            // 3. An unknown message type closes that connection.
            let badType = try RawConnection(daemon.socketPath)
            badType.write(frame(streamID: 1, type: 9, payload: [1, 2, 3]))
            #expect(badType.isClosedByPeer())

            // 4. A request frame whose payload is not a ttrpc.Request closes that connection.
            let badEnvelope = try RawConnection(daemon.socketPath)
            badEnvelope.write(frame(streamID: 1, type: 1, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]))
            #expect(badEnvelope.isClosedByPeer())

            // 5. Random bytes, many rounds: whatever happens stays on that connection.
            var generator = SystemRandomNumberGenerator()
            for round in 0..<50 {
                let random = try RawConnection(daemon.socketPath)
                let count = Int.random(in: 1...4096, using: &generator)
                var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if round % 2 == 0 { bytes[0] = 0 }  // small declared lengths too, so frames get parsed
                random.write(bytes)
                _ = random.readFrame(timeoutMilliseconds: 50)
            }

            // 6. A valid request for an unknown method on a raw connection: UNIMPLEMENTED.
            let unknown = try RawConnection(daemon.socketPath)
            var request = Ttrpc_Request()
            request.service = WasmletRuntimeAPI.serviceName
            request.method = "Explode"
            unknown.write(frame(streamID: 1, type: 1, payload: try request.serializedBytes()))
            if case .frame(_, _, let body) = unknown.readFrame() {
                #expect(try decodeResponse(body).code == 12)
            } else {
                Issue.record("no answer to an unknown method")
            }

            // The daemon is alive, the bystander still works, a new client works.
            #expect(daemon.isRunning)
            #expect(try await bystander.version().apiVersion == "wasmlet.v1")
            let fresh = try await daemon.client()
            _ = try await fresh.create("after-fuzz", module: example("hello"))
            _ = try await fresh.start("after-fuzz")
            #expect(try await fresh.wait("after-fuzz").code == 0)
            await fresh.close()
            await bystander.close()
        }
    }
}
