import Foundation
import SwiftProtobuf
import Testing
import WasmletAPI
import WasmletTTRPC
@testable import WasmletClient
import WasmletJSON

func makeInstance(
    namespace: String = "default", id: String, state: Wasmlet_V1_State, exitCode: Int32? = nil,
    digest: String = "sha256:0123456789abcdef0123", createdAt: Int64? = 1_700_000_000,
    labels: [String: String] = [:]
) -> Wasmlet_V1_Instance {
    .with {
        $0.namespace = namespace
        $0.id = id
        $0.state = state
        $0.moduleDigest = digest
        $0.labels = labels
        if let createdAt { $0.createdAt = Google_Protobuf_Timestamp(seconds: createdAt, nanos: 250_000_000) }
        if let exitCode {
            $0.exit = .with {
                $0.code = exitCode
                $0.reason = exitCode == 137 ? .killed : .exited
                $0.signal = exitCode == 137 ? 9 : 0
            }
        }
    }
}

@Suite struct FormattingTests {
    @Test func tableIsSortedAndAligned() {
        let now: Int64 = 1_700_000_000
        let instances = [
            makeInstance(namespace: "k8s.io", id: "b", state: .running, createdAt: now - 3 * 3600),
            makeInstance(id: "a-long-instance-id", state: .exited, exitCode: 137, createdAt: now - 45),
            makeInstance(id: "c", state: .created, digest: "", createdAt: nil),
        ]
        let table = InstanceFormatting.table(instances, now: now)
        let expected = """
            NAMESPACE   ID                   STATE     EXIT   MODULE         AGE
            default     a-long-instance-id   exited    137    0123456789ab   45s
            default     c                    created   -      -              -
            k8s.io      b                    running   -      0123456789ab   3h

            """
        #expect(table == expected)
    }

    /// A service adds the SERVING column: its bound addresses and request count.
    @Test func servicesShowWhereTheyServe() {
        var service = makeInstance(id: "svc", state: .running)
        service.httpTrigger = Wasmlet_V1_HTTPTrigger()
        service.listeners = [.with { $0.boundAddress = "127.0.0.1:8080"; $0.boundPort = 8080 }]
        service.httpStats = .with { $0.requests = 12 }
        let table = InstanceFormatting.table([service, makeInstance(id: "cmd", state: .running)], now: 1_700_000_000)
        let expected = """
            NAMESPACE   ID    STATE     EXIT   MODULE         AGE   SERVING
            default     cmd   running   -      0123456789ab   0s    -
            default     svc   running   -      0123456789ab   0s    127.0.0.1:8080 (12 requests)

            """
        #expect(table == expected)
    }

    @Test func emptyTableHasHeaderOnly() {
        #expect(InstanceFormatting.table([], now: 0) == "NAMESPACE   ID   STATE   EXIT   MODULE   AGE\n")
    }

    @Test(arguments: [(0, "0s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (172_799, "47h"),
                      (172_800, "2d"), (-5, "0s")] as [(Int64, String)])
    func ages(seconds: Int64, expected: String) {
        #expect(InstanceFormatting.age(seconds: seconds) == expected)
    }

    @Test func shortDigest() {
        #expect(InstanceFormatting.shortDigest("sha256:abcdef0123456789") == "abcdef012345")
        #expect(InstanceFormatting.shortDigest("") == "-")
    }

    @Test func inspectJSONHasStableKeyOrder() {
        var instance = makeInstance(id: "x", state: .exited, exitCode: 3, labels: ["z": "1", "a": "q\"uote"])
        instance.serial = 7
        instance.modulePath = "/m/hello.wasm"
        instance.limits = .with { $0.memoryBytes = 65536; $0.fuel = 10 }
        instance.exit.exitedAt = Google_Protobuf_Timestamp(seconds: 1_700_000_001, nanos: 5_000_000)
        let json = InstanceFormatting.json(instance)
        let expected = """
            {
              "namespace": "default",
              "id": "x",
              "state": "exited",
              "serial": 7,
              "labels": {
                "a": "q\\"uote",
                "z": "1"
              },
              "moduleDigest": "sha256:0123456789abcdef0123",
              "modulePath": "/m/hello.wasm",
              "createdAt": "2023-11-14T22:13:20.250Z",
              "startedAt": null,
              "limits": {
                "memoryBytes": 65536,
                "fuel": 10,
                "timeoutMs": 0,
                "stackBytes": 0
              },
              "exit": {
                "code": 3,
                "reason": "exited",
                "message": "",
                "signal": 0,
                "startedAt": null,
                "exitedAt": "2023-11-14T22:13:21.005Z",
                "fuelConsumed": 0,
                "cpuTimeNs": 0,
                "peakMemoryBytes": 0,
                "memoryLimitHit": false,
                "memoryBudgetHit": false
              }
            }
            """
        #expect(json == expected)
    }

    @Test func listJSONIsSortedAndCompactFormParses() throws {
        let instances = [makeInstance(id: "b", state: .running), makeInstance(id: "a", state: .created)]
        let compact = String(decoding: InstanceFormatting.json(instances, pretty: false), as: UTF8.self)
        #expect(compact.hasPrefix(#"{"instances":[{"namespace":"default","id":"a","state":"created""#))
        #expect(compact.contains(#""exit":null"#))
        #expect(InstanceFormatting.json([]) == Array("{\n  \"instances\": []\n}".utf8))
    }

    @Test func jsonEscapesControlCharacters() {
        #expect(JSONValue.string("a\n\t\u{1}\\").rendered() == #""a\n\t\u0001\\""#)
    }

    @Test func statsText() {
        let stats = Wasmlet_V1_StatsResponse.with { $0.running = 2; $0.instancesCreated = 10; $0.uptimeSeconds = 5 }
        let text = InstanceFormatting.statsText(stats)
        #expect(text.hasPrefix("instancesCreated:    10\ninstancesDeleted:    0\n"))
        #expect(text.contains("\nrunning:             2\n"))
        #expect(text.hasSuffix("uptimeSeconds:       5\n"))
    }

    @Test func exitSummaries() {
        #expect(InstanceFormatting.exitSummary(.with { $0.reason = .exited; $0.code = 3 }) == nil)
        #expect(InstanceFormatting.exitSummary(.with { $0.reason = .killed; $0.code = 143; $0.signal = 15 })
            == "killed by signal 15 (exit code 143)")
        #expect(InstanceFormatting.exitSummary(.with { $0.reason = .trapped; $0.message = "unreachable" })
            == "trapped: unreachable")
    }

    @Test func errorMessages() {
        #expect(WasmletClientError.cannotConnect(socketPath: "/x.sock", reason: .notRunning).description
            == "cannot connect: is wasmletd running? tried /x.sock")
        #expect(WasmletClientError.status(.notFound("instance default/x not found")).description
            == "instance default/x not found")
        let denied = WasmletClientError.status(.permissionDenied("uid 1000 is not allowed")).description
        #expect(denied.hasPrefix("uid 1000 is not allowed;") && denied.contains("group"))
        #expect(WasmletClientError.cannotConnect(socketPath: "/x.sock", reason: .permissionDenied).description
            .contains("socket's group"))
    }
}

@Suite struct FormattingScaleTests {
    /// 10,000 instances (what the list benchmark uses) render completely and parse back; how
    /// fast is for `wasmlet-bench --only api` to say, not for a test on a shared machine.
    @Test func tenThousandRowsRenderCompletely() throws {
        let instances = (0..<10_000).map { makeInstance(id: "instance-\($0)", state: $0 % 2 == 0 ? .running : .exited,
                                                        exitCode: $0 % 2 == 0 ? nil : 0) }
        let table = InstanceFormatting.table(instances, now: 1_700_000_100)
        #expect(table.split(separator: "\n").count == 10_001)
        for pretty in [true, false] {
            let bytes = InstanceFormatting.json(instances, pretty: pretty)
            let parsed = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
            let listed = parsed?["instances"] as? [[String: Any]] ?? []
            #expect(listed.count == 10_000)
            #expect(Set(listed.compactMap { $0["id"] as? String }).count == 10_000)
            #expect(listed.first?["createdAt"] as? String == "2023-11-14T22:13:20.250Z")
        }
    }

    /// The streaming writer and the value tree agree on layout, including empty and nested
    /// containers and the extremes of the integers.
    @Test func writerMatchesValueRendering() {
        let value = JSONValue.object([
            ("empty", .object([])), ("none", .array([])), ("min", .int(Int64.min)), ("max", .uint(UInt64.max)),
            ("zero", .int(0)), ("nested", .array([.object([("a", .array([.null, .bool(true), .string("\u{7f}\"")]))]), .array([])])),
        ])
        for pretty in [true, false] {
            var writer = JSONWriter(pretty: pretty)
            value.write(to: &writer)
            #expect(writer.bytes == value.renderedUTF8(pretty: pretty))
        }
        #expect(value.rendered(pretty: false)
            == #"{"empty":{},"none":[],"min":-9223372036854775808,"max":18446744073709551615,"zero":0,"nested":[{"a":[null,true,"\#u{7f}\""]},[]]}"#)
        #expect(JSONValue.array([.object([])]).rendered() == "[\n  {}\n]")
    }
}
