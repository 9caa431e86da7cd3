import Foundation
import Glibc
import Testing
@testable import WasmletRuntime

/// The guest must never reach host files outside its preopens.
@Suite struct SandboxTests {
    struct Tree {
        let root: URL
        let data: URL
        let outside: URL
    }

    static func makeTree() throws -> Tree {
        let root = try Fixtures.temporaryDirectory()
        let data = root.appendingPathComponent("data")
        let outside = root.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try "inside\n".write(to: data.appendingPathComponent("file.txt"), atomically: true, encoding: .utf8)
        try "secret\n".write(to: outside.appendingPathComponent("secret.txt"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: data.appendingPathComponent("escape").path, withDestinationPath: outside.path)
        try FileManager.default.createSymbolicLink(
            atPath: data.appendingPathComponent("abs-link").path, withDestinationPath: outside.appendingPathComponent("secret.txt").path)
        return Tree(root: root, data: data, outside: outside)
    }

    @Test func readsInsideThePreopen() async throws {
        let tree = try Self.makeTree()
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cat", args: ["/data/file.txt"],
                                            preopens: [PreopenSpec(guestPath: "/data", hostPath: tree.data.path)])
        #expect(result.stdout == "inside\n")
        #expect(result.exit.code == 0)
    }

    @Test(arguments: [
        "/data/../outside/secret.txt",
        "/data/escape/secret.txt",
        "/data/abs-link",
        "/outside/secret.txt",
        "/etc/passwd",
        "../outside/secret.txt",
    ])
    func escapesFail(path: String) async throws {
        let tree = try Self.makeTree()
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cat", args: [path],
                                            preopens: [PreopenSpec(guestPath: "/data", hostPath: tree.data.path)])
        #expect(result.exit.code == 1, "cat \(path) must fail")
        #expect(!result.stdout.contains("secret"))
        #expect(!result.stdout.contains("root:"))
        #expect(result.stderr.contains("cat: "))
    }

    @Test func readOnlyPreopenRefusesWrites() async throws {
        let tree = try Self.makeTree()
        let runtime = try Fixtures.makeRuntime()
        let preopen = [PreopenSpec(guestPath: "/data", hostPath: tree.data.path, readOnly: true)]
        let create = try await Fixtures.run(runtime, guest: "cat", args: ["--write", "/data/new.txt", "x"], preopens: preopen)
        #expect(create.exit.code == 1)
        #expect(!FileManager.default.fileExists(atPath: tree.data.appendingPathComponent("new.txt").path))
        let truncate = try await Fixtures.run(runtime, guest: "cat", args: ["--write", "/data/file.txt", "x"], preopens: preopen)
        #expect(truncate.exit.code == 1)
        #expect(try String(contentsOf: tree.data.appendingPathComponent("file.txt"), encoding: .utf8) == "inside\n")
        let read = try await Fixtures.run(runtime, guest: "cat", args: ["/data/file.txt"], preopens: preopen)
        #expect(read.stdout == "inside\n", "reading stays allowed")
    }

    @Test func writablePreopenAllowsWrites() async throws {
        let tree = try Self.makeTree()
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cat", args: ["--write", "/data/new.txt", "written"],
                                            preopens: [PreopenSpec(guestPath: "/data", hostPath: tree.data.path)])
        #expect(result.exit.code == 0)
        #expect(try String(contentsOf: tree.data.appendingPathComponent("new.txt"), encoding: .utf8) == "written")
    }

    @Test func noPreopenNoFiles() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cat", args: ["/etc/hostname"])
        #expect(result.exit.code == 1)
    }

    @Test func preopenMustBeADirectory() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("cat"))
        let error = #expect(throws: RuntimeError.self) {
            try runtime.create(InstanceSpec(key: InstanceKey(namespace: "t", id: "x"), moduleDigest: module.digest,
                                            preopens: [PreopenSpec(guestPath: "/d", hostPath: "/nonexistent")]))
        }
        #expect(error?.kind == .invalidArgument)
    }
}
