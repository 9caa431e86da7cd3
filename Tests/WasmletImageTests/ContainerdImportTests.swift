import Foundation
import Testing
import WasmletTestSupport

@testable import WasmletImage

#if canImport(Glibc)
import Glibc
#endif

/// Why the containerd test cannot run here, or nil when it can.
let containerdSkipReason: String? = {
    if getuid() != 0 { return "needs root to run a private containerd" }
    for binary in ["/usr/bin/containerd", "/usr/bin/ctr"] where !FileManager.default.isExecutableFile(atPath: binary) {
        return "\(binary) is not installed (apt-get install containerd)"
    }
    return nil
}()

/// A containerd of our own: root, state and sockets in a temporary directory, no CRI plugin.
/// Stopped (SIGTERM, then SIGKILL) by its pid.
final class PrivateContainerd: @unchecked Sendable {
    let directory: TemporaryDirectory
    let socket: String
    let process: ChildProcess
    let namespace = "test"

    private init() throws {
        // Short path: the socket path must fit sockaddr_un (108 bytes).
        var template = Array("/tmp/wlimg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        directory = TemporaryDirectory(existing: String(cString: made))
        socket = directory.file("containerd.sock")
        let config = """
            version = 2
            root = "\(directory.file("root"))"
            state = "\(directory.file("state"))"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(socket)"
            [ttrpc]
              address = "\(socket).ttrpc"
            [plugins."io.containerd.internal.v1.opt"]
              path = "\(directory.file("opt"))"

            """
        try write(Array(config.utf8), to: directory.file("config.toml"))
        process = try ChildProcess(
            "/usr/bin/containerd", ["--config", directory.file("config.toml")],
            environment: ProcessInfo.processInfo.environment, stdout: directory.file("containerd.log"), stderr: nil)
    }

    /// Starts it and returns once it answers `ctr version`; the 20 s are a hang guard.
    static func start() async throws -> PrivateContainerd {
        let containerd = try PrivateContainerd()
        let answers = await eventually(timeout: .seconds(20), every: .milliseconds(50)) {
            guard containerd.process.isRunning else { return true }
            guard FileManager.default.fileExists(atPath: containerd.socket) else { return false }
            return (try? await containerd.ctr(["version"]))?.status == 0
        }
        guard answers, containerd.process.isRunning else {
            await containerd.stop()
            throw POSIXError(.ETIMEDOUT)
        }
        return containerd
    }

    func ctr(_ arguments: [String]) async throws -> ProcessResult {
        try await runProcess("/usr/bin/ctr", ["-a", socket, "-n", namespace] + arguments)
    }

    /// Runs `body` against a fresh containerd, stopped afterwards whatever `body` did.
    static func with(_ body: (PrivateContainerd) async throws -> Void) async throws {
        let containerd = try await start()
        do {
            try await body(containerd)
        } catch {
            await containerd.stop()
            throw error
        }
        await containerd.stop()
    }

    /// SIGTERM, then SIGKILL after a 10 s hang guard.
    func stop() async {
        process.signal(SIGTERM)
        if await process.wait(timeout: .seconds(10)) == nil { process.killAndReap() }
        directory.remove()
    }
}

extension TemporaryDirectory {
    init(existing path: String) { self.path = path }
}

@Suite("containerd 1.6 imports the archives", .serialized)
struct ContainerdImportTests {
    @Test(
        "ctr image import: linux style plainly, wasi style with --all-platforms; export round-trips; image mount shows the module",
        .enabled(if: containerdSkipReason == nil, Comment(rawValue: containerdSkipReason ?? "")))
    func importBothStyles() async throws {
        try await PrivateContainerd.with { containerd in try await importBothStyles(containerd) }
    }

    private func importBothStyles(_ containerd: PrivateContainerd) async throws {
        let module = moduleWithCustomSection("containerd-import")

        var linux = try request(module, reference: "wasmlet/hello:latest", platform: ImagePlatform.host)
        linux.arguments = ["a", "b"]
        let linuxImage = try ImageBuilder.build(linux)
        let linuxTar = containerd.directory.file("linux.tar")
        try ImageBuilder.writeAtomically(linuxImage.archive, to: linuxTar)

        let wasi = try request(module, reference: "wasmlet/hello:wasi", platform: ImagePlatform.wasi)
        let wasiImage = try ImageBuilder.build(wasi)
        let wasiTar = containerd.directory.file("wasi.tar")
        try ImageBuilder.writeAtomically(wasiImage.archive, to: wasiTar)

        let plain = try await containerd.ctr(["image", "import", linuxTar])
        #expect(plain.status == 0, "import linux style: \(plain.stderr)")
        // Without --all-platforms containerd 1.6 filters the wasip1/wasm manifest out and fails.
        let filtered = try await containerd.ctr(["image", "import", wasiTar])
        #expect(filtered.status != 0)
        #expect(filtered.stderr.contains("filtered out"), "\(filtered.stderr)")
        let all = try await containerd.ctr(["image", "import", "--all-platforms", wasiTar])
        #expect(all.status == 0, "import wasi style: \(all.stderr)")

        let list = try await containerd.ctr(["image", "ls"])
        #expect(list.status == 0, "\(list.stderr)")
        let rows = list.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        let linuxRow = rows.first { $0.first == "docker.io/wasmlet/hello:latest" }
        let wasiRow = rows.first { $0.first == "docker.io/wasmlet/hello:wasi" }
        #expect(linuxRow?.contains(linuxImage.manifestDigest) == true, "\(list.stdout)")
        #expect(linuxRow?.contains("linux/\(ImagePlatform.hostArchitecture)") == true, "\(list.stdout)")
        #expect(wasiRow?.contains(wasiImage.manifestDigest) == true, "\(list.stdout)")
        #expect(wasiRow?.contains("wasip1/wasm") == true, "\(list.stdout)")

        let check = try await containerd.ctr(["image", "check"])
        #expect(check.stdout.split(separator: "\n").filter { $0.contains("complete (2/2)") }.count == 2, "\(check.stdout)")

        // containerd exports the same manifest back, and inspect reads its archive.
        let exported = containerd.directory.file("exported.tar")
        let export = try await containerd.ctr(["image", "export", exported, "docker.io/wasmlet/hello:latest"])
        #expect(export.status == 0, "export: \(export.stderr)")
        let summaries = try ImageArchive.inspect(path: exported)
        #expect(summaries.map(\.manifestDigest) == [linuxImage.manifestDigest])
        #expect(summaries.first?.reference == "docker.io/wasmlet/hello:latest")

        // Unpack each image into a snapshot and look at it: the module, byte for byte, 0755.
        for (reference, platform) in [
            ("docker.io/wasmlet/hello:latest", "linux/\(ImagePlatform.hostArchitecture)"),
            ("docker.io/wasmlet/hello:wasi", "wasip1/wasm"),
        ] {
            let target = containerd.directory.file("mnt-" + platform.replacingOccurrences(of: "/", with: "-"))
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
            let mount = try await containerd.ctr(["image", "mount", "--platform", platform, reference, target])
            try #require(mount.status == 0, "image mount \(reference): \(mount.stderr)")
            #expect(try readBytes(target + "/app.wasm") == module, "\(reference)")
            let mode = try FileManager.default.attributesOfItem(atPath: target + "/app.wasm")[.posixPermissions]
            #expect((mode as? NSNumber)?.intValue == 0o755, "\(reference)")
            let unmount = try await containerd.ctr(["image", "unmount", "--rm", target])
            #expect(unmount.status == 0, "unmount: \(unmount.stderr)")
        }
    }
}
