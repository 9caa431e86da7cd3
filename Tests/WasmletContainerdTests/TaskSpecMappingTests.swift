import Foundation
import Testing
import WasmletAPI
import WasmletRuntime
@testable import WasmletContainerd

/// The OCI spec → instance mapping without a daemon: durations, paths, bind mounts.
@Suite struct TaskSpecMappingTests {
    /// The annotation's durations (`DurationSyntax`); a bare "30" is refused now (it meant
    /// seconds here and milliseconds to `wasmletctl run --timeout`).
    @Test func durations() throws {
        func timeout(_ text: String) -> UInt64? { try? TaskSpecMapping.limits(Self.spec(timeout: text)).timeoutMilliseconds }
        #expect(timeout("30s") == 30_000)
        #expect(timeout("1m30s") == 90_000)
        #expect(timeout("250ms") == 250)
        #expect(timeout("1.5s") == 1_500)
        #expect(timeout("2h") == 7_200_000)
        #expect(timeout(" 5s ") == 5_000)
        for bad in ["30", "", "s", "5x", "-5s", "5 s", "1e9h", "99999999999999999999"] {
            #expect(timeout(bad) == nil, "\(bad)")
        }
    }

    @Test func rootfsPathsStayInsideTheRootfs() throws {
        let root = NSTemporaryDirectory() + "wlt-rootfs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        FileManager.default.createFile(atPath: root + "/bin/app.wasm", contents: Data())
        try FileManager.default.createSymbolicLink(atPath: root + "/abs.wasm", withDestinationPath: "/bin/app.wasm")
        try FileManager.default.createSymbolicLink(atPath: root + "/up.wasm", withDestinationPath: "../../../etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: root + "/loop", withDestinationPath: "/loop")

        #expect(try RootfsPath.resolve("/bin/app.wasm", in: root) == root + "/bin/app.wasm")
        #expect(try RootfsPath.resolve("app.wasm", in: root, relativeTo: "/bin") == root + "/bin/app.wasm")
        #expect(try RootfsPath.resolve("/abs.wasm", in: root) == root + "/bin/app.wasm")
        #expect(try RootfsPath.resolve("/../../etc/passwd", in: root) == root + "/etc/passwd")
        #expect(try RootfsPath.resolve("/up.wasm", in: root) == root + "/etc/passwd")
        #expect(throws: (any Error).self) { try RootfsPath.resolve("/loop", in: root) }
    }

    @Test func bindMountsOfDirectoriesBecomePreopens() throws {
        let dir = NSTemporaryDirectory() + "wlt-bind-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/hosts", contents: Data())
        let mounts = [
            OCIRuntimeSpec.Mount(destination: "/data", type: "bind", source: dir, options: ["rbind", "ro"]),
            OCIRuntimeSpec.Mount(destination: "/scratch", type: nil, source: dir, options: ["bind"]),
            OCIRuntimeSpec.Mount(destination: "/etc/hosts", type: "bind", source: dir + "/hosts", options: ["rbind"]),
            OCIRuntimeSpec.Mount(destination: "/proc", type: "proc", source: "proc", options: nil),
            OCIRuntimeSpec.Mount(destination: "/dev/shm", type: "bind", source: dir, options: ["rbind"]),
            OCIRuntimeSpec.Mount(destination: "/missing", type: "bind", source: dir + "/nope", options: ["rbind"]),
        ]
        let preopens = try TaskSpecMapping.bindPreopens(mounts)
        #expect(preopens.map(\.guestPath) == ["/data", "/scratch"])
        #expect(preopens.map(\.readOnly) == [true, false])
    }

    @Test func memoryLimitAndAnnotations() throws {
        let json = """
            {"linux": {"resources": {"memory": {"limit": 16777216}, "cpu": {"quota": 50000, "period": 100000}}},
             "annotations": {"wasmlet.dev/fuel": "1000", "wasmlet.dev/timeout": "2s"}}
            """
        let spec = try JSONDecoder().decode(OCIRuntimeSpec.self, from: Data(json.utf8))
        let limits = try TaskSpecMapping.limits(spec)
        #expect(limits.memoryBytes == 16 << 20)
        #expect(limits.fuel == 1000)
        #expect(limits.timeoutMilliseconds == 2000)
    }

    static func spec(timeout: String) throws -> OCIRuntimeSpec {
        let json = #"{"annotations": {"wasmlet.dev/timeout": "\#(timeout)"}}"#
        return try JSONDecoder().decode(OCIRuntimeSpec.self, from: Data(json.utf8))
    }

    /// The annotation takes `DurationSyntax`, as every other duration does.
    @Test(arguments: [("1m30s", 90_000), ("500ms", 500), ("1.5s", 1_500), ("2h", 7_200_000)] as [(String, UInt64)])
    func timeoutAnnotation(text: String, milliseconds: UInt64) throws {
        #expect(try TaskSpecMapping.limits(Self.spec(timeout: text)).timeoutMilliseconds == milliseconds)
    }

    /// A bare number used to mean seconds here and milliseconds to `wasmletctl run --timeout`:
    /// refused now, like junk, overflow, a sign, and 0 (leave the annotation out for none).
    @Test(arguments: [
        ("300", "add a unit, e.g. 300ms or 300s"), ("", "empty duration"), ("5x", "unknown unit"),
        ("-5s", "sign"), ("99999999999h", "too long"), ("0s", "must be more than 0"), ("1us", "whole number of milliseconds"),
    ])
    func badTimeoutAnnotations(text: String, expected: String) throws {
        let spec = try Self.spec(timeout: text)
        #expect {
            _ = try TaskSpecMapping.limits(spec)
        } throws: { error in
            "\(error)".contains("wasmlet.dev/timeout") && "\(error)".contains(expected)
        }
    }
    /// `wasmlet.dev/trigger: http` and its limits, in the units `wasmletctl serve` takes.
    @Test func httpTriggerAnnotations() throws {
        #expect(try TaskHTTPTrigger.spec(["wasmlet.dev/listen": "8080"]) == nil)
        let plain = try TaskHTTPTrigger.spec(["wasmlet.dev/trigger": "http", "wasmlet.dev/listen": "8080"])
        #expect(plain == HTTPTriggerSpec())
        let tuned = try TaskHTTPTrigger.spec([
            "wasmlet.dev/trigger": "http", "wasmlet.dev/listen": "8080", "wasmlet.dev/http-max-concurrency": "8",
            "wasmlet.dev/http-queue-length": "0", "wasmlet.dev/http-queue-timeout": "250ms", "wasmlet.dev/http-read-timeout": "3s",
            "wasmlet.dev/http-max-body": "10M", "wasmlet.dev/http-max-headers": "8K", "wasmlet.dev/http-max-response": "1M",
        ])
        #expect(tuned == HTTPTriggerSpec(
            maxConcurrency: 8, queueLength: 0, queueTimeoutMilliseconds: 250, maxBodyBytes: 10 << 20, maxHeaderBytes: 8 << 10,
            maxResponseBytes: 1 << 20, requestReadTimeoutMilliseconds: 3_000))
    }

    /// Each bad trigger annotation fails the Create, naming the annotation and the problem.
    @Test(arguments: [
        (["wasmlet.dev/trigger": "grpc", "wasmlet.dev/listen": "8080"], "the only trigger is \"http\""),
        (["wasmlet.dev/trigger": "http"], "needs listeners"),
        (["wasmlet.dev/http-max-body": "1M", "wasmlet.dev/listen": "8080"], "needs wasmlet.dev/trigger=http"),
        (["wasmlet.dev/trigger": "http", "wasmlet.dev/listen": "80", "wasmlet.dev/http-max-concurrency": "0"], "at least 1"),
        (["wasmlet.dev/trigger": "http", "wasmlet.dev/listen": "80", "wasmlet.dev/http-queue-length": "-1"], "whole number"),
        (["wasmlet.dev/trigger": "http", "wasmlet.dev/listen": "80", "wasmlet.dev/http-queue-timeout": "5"], "add a unit"),
        (["wasmlet.dev/trigger": "http", "wasmlet.dev/listen": "80", "wasmlet.dev/http-max-body": "lots"], "wasmlet.dev/http-max-body"),
        (["wasmlet.dev/trigger": "http", "wasmlet.dev/listen": "80", "wasmlet.dev/http-max-bodies": "1M"], "unknown HTTP trigger setting"),
    ] as [([String: String], String)])
    func badHTTPTriggerAnnotations(annotations: [String: String], expected: String) {
        #expect {
            _ = try TaskHTTPTrigger.spec(annotations)
        } throws: { error in
            "\(error)".contains("bad container spec") && "\(error)".contains(expected)
        }
    }
}
