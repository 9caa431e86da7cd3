import Foundation
import Testing
import WasmletAPI
@testable import WasmletDaemon

/// The OCI spec → instance mapping without a daemon: durations, paths, bind mounts.
@Suite struct TaskSpecMappingTests {
    @Test func durations() {
        #expect(TaskSpecMapping.parseDuration("30") == 30_000)
        #expect(TaskSpecMapping.parseDuration("30s") == 30_000)
        #expect(TaskSpecMapping.parseDuration("1m30s") == 90_000)
        #expect(TaskSpecMapping.parseDuration("250ms") == 250)
        #expect(TaskSpecMapping.parseDuration("1.5s") == 1_500)
        #expect(TaskSpecMapping.parseDuration("2h") == 7_200_000)
        #expect(TaskSpecMapping.parseDuration(" 5s ") == 5_000)
        for bad in ["", "s", "5x", "-5s", "5 s", "1e9h", "99999999999999999999"] {
            #expect(TaskSpecMapping.parseDuration(bad) == nil, "\(bad)")
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
        #expect(preopens.map(\.readonly) == [true, false])
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
        #expect(limits.timeoutMs == 2000)
    }
}
