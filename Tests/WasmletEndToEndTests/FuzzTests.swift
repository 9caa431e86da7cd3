import Foundation
import Testing
import WasmletAPI
import WasmletTTRPC
import WasmletTestSupport

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

            // 5. Random bytes, many rounds: whatever happens stays on that connection. The bytes
            //    come from a seeded generator, printed so a failure can be replayed.
            let seed = FuzzSeed.current()
            print("fuzz seed \(seed); replay with \(FuzzSeed.variable)=\(seed)")
            var generator = SplitMix64(seed: seed)
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
            #expect(daemon.isRunning, "fuzz seed \(seed)")
            #expect(try await bystander.version().apiVersion == "wasmlet.v1", "fuzz seed \(seed)")
            let fresh = try await daemon.client()
            _ = try await fresh.create("after-fuzz", module: example("hello"))
            _ = try await fresh.start("after-fuzz")
            #expect(try await fresh.wait("after-fuzz").code == 0)
            await fresh.close()
            await bystander.close()
        }
    }
}

/// The fuzz test's seed: `$WASMLET_FUZZ_SEED` (decimal) when set, else a fresh random one.
enum FuzzSeed {
    static let variable = "WASMLET_FUZZ_SEED"

    static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> UInt64 {
        if let text = environment[variable], !text.isEmpty {
            guard let seed = UInt64(text) else { fatalError("\(variable)=\(text) is not a decimal UInt64") }
            return seed
        }
        return UInt64.random(in: .min ... .max)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small generator whose whole state is its seed, so one
/// number replays a run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct FuzzSeedTests {
    /// The same seed gives the same bytes (what replaying needs), another seed others.
    @Test func aSeedReplaysTheSameBytes() {
        var first = SplitMix64(seed: 42)
        var again = SplitMix64(seed: 42)
        var other = SplitMix64(seed: 43)
        let a = (0..<64).map { _ in UInt8.random(in: 0...255, using: &first) }
        #expect(a == (0..<64).map { _ in UInt8.random(in: 0...255, using: &again) })
        #expect(a != (0..<64).map { _ in UInt8.random(in: 0...255, using: &other) })
        // The reference value of SplitMix64 for seed 0 (as in Vigna's splitmix64.c).
        var zero = SplitMix64(seed: 0)
        #expect(zero.next() == 0xE220_A839_7B1D_CDAF)
    }

    @Test func theSeedComesFromTheEnvironment() {
        #expect(FuzzSeed.current(environment: [FuzzSeed.variable: "12345"]) == 12345)
    }
}
