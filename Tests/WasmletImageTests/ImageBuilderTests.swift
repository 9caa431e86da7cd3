import Foundation
import Testing

@testable import WasmletImage

/// Builds a request for `module` with the given reference and platform.
func request(
    _ module: [UInt8] = minimalModule, reference: String = "wasmlet/test:v1", platform: OCI.Platform = ImagePlatform.host
) throws -> ImageBuildRequest {
    ImageBuildRequest(module: module, modulePath: "test.wasm", reference: try ImageReference(parsing: reference), platform: platform)
}

/// An image archive extracted by the system tar and checked from its JSON, independently of the
/// code that wrote it: every digest recomputed by sha256sum, every size by stat.
struct ExtractedLayout {
    let root: String
    let index: [String: Any]
    let manifestDescriptor: [String: Any]
    let manifest: [String: Any]
    let config: [String: Any]
    let layerPath: String
    let layerRoot: String

    init(archive: String, into directory: TemporaryDirectory) async throws {
        let root = directory.file("layout")
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        let extract = try await runProcess(systemTar, ["-xf", archive, "-C", root])
        try #require(extract.status == 0, "tar -x: \(extract.stderr)")

        let layout = try jsonObject(root + "/oci-layout")
        #expect(layout as NSDictionary == ["imageLayoutVersion": "1.0.0"] as NSDictionary)
        index = try jsonObject(root + "/index.json")
        #expect(index["schemaVersion"] as? Int == 2)
        #expect(index["mediaType"] as? String == "application/vnd.oci.image.index.v1+json")
        let manifests = try #require(index["manifests"] as? [[String: Any]])
        try #require(manifests.count == 1)
        manifestDescriptor = manifests[0]
        #expect(manifestDescriptor["mediaType"] as? String == "application/vnd.oci.image.manifest.v1+json")

        func blob(_ descriptor: [String: Any]) async throws -> String {
            let digest = try #require(descriptor["digest"] as? String)
            let path = root + "/blobs/sha256/" + digest.dropFirst("sha256:".count)
            #expect(try await systemDigest(path) == digest, "digest of \(path)")
            #expect(try fileSize(path) == descriptor["size"] as? Int, "size of \(path)")
            return path
        }
        manifest = try jsonObject(try await blob(manifestDescriptor))
        #expect(manifest["schemaVersion"] as? Int == 2)
        #expect(manifest["mediaType"] as? String == "application/vnd.oci.image.manifest.v1+json")
        let configDescriptor = try #require(manifest["config"] as? [String: Any])
        #expect(configDescriptor["mediaType"] as? String == "application/vnd.oci.image.config.v1+json")
        config = try jsonObject(try await blob(configDescriptor))
        let layers = try #require(manifest["layers"] as? [[String: Any]])
        try #require(layers.count == 1)
        #expect(layers[0]["mediaType"] as? String == "application/vnd.oci.image.layer.v1.tar")
        layerPath = try await blob(layers[0])
        let rootfs = try #require(config["rootfs"] as? [String: Any])
        #expect(rootfs["type"] as? String == "layers")
        // Uncompressed layer: its diff_id is its digest.
        #expect(rootfs["diff_ids"] as? [String] == [try await systemDigest(layerPath)])
        // Nothing in blobs/ but the three blobs.
        let blobs = try FileManager.default.contentsOfDirectory(atPath: root + "/blobs/sha256")
        #expect(blobs.count == 3)

        let layerRoot = directory.file("rootfs")
        self.layerRoot = layerRoot
        try FileManager.default.createDirectory(atPath: layerRoot, withIntermediateDirectories: false)
        let layerExtract = try await runProcess(systemTar, ["-xf", layerPath, "-C", layerRoot, "--no-same-owner"])
        try #require(layerExtract.status == 0, "tar -x layer: \(layerExtract.stderr)")
    }

    var annotations: [String: String] { manifestDescriptor["annotations"] as? [String: String] ?? [:] }
    var executionConfig: [String: Any] { config["config"] as? [String: Any] ?? [:] }
}

@Suite("ImageBuilder")
struct ImageBuilderTests {
    @Test("the archive is a valid OCI layout: names, platform, config, digests and sizes")
    func layout() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let module = moduleWithCustomSection("layout-test")
        var req = try request(module, reference: "ghcr.io/wasmlet/app:1.2")
        req.arguments = ["--exit", "3", "two words"]
        req.environment = ["GREETING=hi there", "EMPTY="]
        req.files = [
            ImageFile(destination: "/etc/app/config.json", contents: Array("{}".utf8)),
            ImageFile(destination: "/bin/tool", contents: [1, 2, 3], mode: 0o755),
        ]
        req.created = 1_714_564_800  // 2024-05-01T12:00:00Z
        let image = try ImageBuilder.build(req)
        let archive = directory.file("image.tar")
        try ImageBuilder.writeAtomically(image.archive, to: archive)

        let layout = try await ExtractedLayout(archive: archive, into: directory)
        #expect(layout.annotations["io.containerd.image.name"] == "ghcr.io/wasmlet/app:1.2")
        #expect(layout.annotations["org.opencontainers.image.ref.name"] == "1.2")
        #expect(layout.manifestDescriptor["digest"] as? String == image.manifestDigest)
        let platform = layout.manifestDescriptor["platform"] as? [String: String]
        #expect(platform == ["os": "linux", "architecture": ImagePlatform.hostArchitecture])
        #expect(["amd64", "arm64"].contains(ImagePlatform.hostArchitecture))
        #expect(layout.manifest["annotations"] as? [String: String] == ["module.wasm.image/variant": "compat-smart"])

        #expect(layout.config["os"] as? String == "linux")
        #expect(layout.config["architecture"] as? String == ImagePlatform.hostArchitecture)
        #expect(layout.config["created"] as? String == "2024-05-01T12:00:00Z")
        #expect(layout.executionConfig["Entrypoint"] as? [String] == ["/app.wasm"])
        #expect(layout.executionConfig["Cmd"] as? [String] == ["--exit", "3", "two words"])
        #expect(layout.executionConfig["Env"] as? [String] == ["GREETING=hi there", "EMPTY="])
        let history = try #require(layout.config["history"] as? [[String: Any]])
        #expect(history.count == 1)
        #expect(history.first?["created_by"] as? String == "wasmletctl image build")
        #expect(history.first?["created"] as? String == "2024-05-01T12:00:00Z")

        // The layer: module at the entrypoint, 0755; the extras; their directories.
        #expect(try readBytes(layout.layerRoot + "/app.wasm") == module)
        let attributes = try FileManager.default.attributesOfItem(atPath: layout.layerRoot + "/app.wasm")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o755)
        #expect((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_714_564_800)
        #expect(try readBytes(layout.layerRoot + "/etc/app/config.json") == Array("{}".utf8))
        let toolMode = try FileManager.default.attributesOfItem(atPath: layout.layerRoot + "/bin/tool")[.posixPermissions]
        #expect((toolMode as? NSNumber)?.intValue == 0o755)
        let listing = try await runProcess(systemTar, ["-tf", layout.layerPath])
        #expect(listing.stdout.split(separator: "\n") == ["app.wasm", "bin/", "bin/tool", "etc/", "etc/app/", "etc/app/config.json"])
    }

    @Test("the wasi style declares wasip1/wasm; a deep entrypoint gets its directories")
    func wasiStyle() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var req = try request(reference: "hello", platform: ImagePlatform.wasi)
        req.entrypoint = "/opt/wasm/bin/hello.wasm"
        req.wasmVariantAnnotation = false
        let image = try ImageBuilder.build(req)
        try ImageBuilder.writeAtomically(image.archive, to: directory.file("wasi.tar"))
        let layout = try await ExtractedLayout(archive: directory.file("wasi.tar"), into: directory)
        #expect(layout.annotations["io.containerd.image.name"] == "docker.io/library/hello:latest")
        #expect(layout.annotations["org.opencontainers.image.ref.name"] == "latest")
        #expect(layout.manifestDescriptor["platform"] as? [String: String] == ["os": "wasip1", "architecture": "wasm"])
        #expect(layout.config["os"] as? String == "wasip1")
        #expect(layout.config["architecture"] as? String == "wasm")
        #expect(layout.config["created"] as? String == "1970-01-01T00:00:00Z")
        #expect(layout.manifest["annotations"] == nil)
        #expect(layout.executionConfig["Entrypoint"] as? [String] == ["/opt/wasm/bin/hello.wasm"])
        #expect(layout.executionConfig["Cmd"] == nil && layout.executionConfig["Env"] == nil)
        #expect(try readBytes(layout.layerRoot + "/opt/wasm/bin/hello.wasm") == minimalModule)
        let listing = try await runProcess(systemTar, ["-tf", layout.layerPath])
        #expect(listing.stdout.split(separator: "\n") == ["opt/", "opt/wasm/", "opt/wasm/bin/", "opt/wasm/bin/hello.wasm"])
    }

    @Test("same inputs give the same bytes; a different time, module or tag gives another digest")
    func determinism() async throws {
        var req = try request(moduleWithCustomSection("det"))
        req.arguments = ["a"]
        req.environment = ["B=1", "A=2"]
        req.files = [ImageFile(destination: "/z", contents: [1]), ImageFile(destination: "/a/b", contents: [2])]
        let first = try ImageBuilder.build(req)
        let second = try ImageBuilder.build(req)
        #expect(first.archive == second.archive)
        #expect(first.manifestDigest == second.manifestDigest)

        var later = req
        later.created = 1
        #expect(try ImageBuilder.build(later).manifestDigest != first.manifestDigest)
        var otherModule = req
        otherModule.module = moduleWithCustomSection("other")
        #expect(try ImageBuilder.build(otherModule).layerDigest != first.layerDigest)
        // The tag is in index.json only: same manifest, different archive.
        var otherTag = req
        otherTag.reference = try ImageReference(parsing: "wasmlet/test:v2")
        let retagged = try ImageBuilder.build(otherTag)
        #expect(retagged.manifestDigest == first.manifestDigest)
        #expect(retagged.archive != first.archive)
    }

    @Test(
        "what is not a core Wasm module is refused, saying why",
        arguments: [
            ([], "empty"),
            ([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], "ELF"),
            (Array("(module (func))".utf8), "wat2wasm"),
            ([0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "gzip"),
            ([0x00, 0x61, 0x73, 0x6d, 0x01], "shorter than the 8-byte"),
            ([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00], "component"),
            ([0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00], "version field is 02 00 00 00"),
            (Array("#!/bin/sh\necho hi\n".utf8), "23 21 2f 62"),
        ] as [([UInt8], String)])
    func badModules(bytes: [UInt8], reason: String) async throws {
        do {
            _ = try ImageBuilder.build(try request(bytes))
            Issue.record("accepted a bad module (\(reason))")
        } catch let error as ImageError {
            guard case .notAWasmModule(let path, _) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(path == "test.wasm")
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test("bad paths, conflicts and bad environment entries are refused")
    func badInputs() async throws {
        for entrypoint in ["app.wasm", "/", "/a/../app.wasm", "/./app.wasm", "/a//b.wasm", "/dir/"] {
            var req = try request()
            req.entrypoint = entrypoint
            #expect(throws: ImageError.self, "entrypoint \(entrypoint)") { try ImageBuilder.build(req) }
        }
        var duplicate = try request()
        duplicate.files = [ImageFile(destination: "/app.wasm", contents: [])]
        #expect(throws: ImageError.conflictingPaths("/app.wasm", "/app.wasm")) { try ImageBuilder.build(duplicate) }
        var fileOverDirectory = try request()
        fileOverDirectory.files = [ImageFile(destination: "/etc", contents: []), ImageFile(destination: "/etc/x", contents: [])]
        #expect(throws: ImageError.conflictingPaths("/etc", "/etc/x")) { try ImageBuilder.build(fileOverDirectory) }
        for entry in ["NOEQUALS", "=value"] {
            var req = try request()
            req.environment = [entry]
            #expect(throws: ImageError.invalidEnvironment(entry)) { try ImageBuilder.build(req) }
        }
        var tooLong = try request()
        tooLong.entrypoint = "/" + String(repeating: "x", count: 101)
        #expect(throws: ImageError.tar(.nameTooLong(String(repeating: "x", count: 101)))) { try ImageBuilder.build(tooLong) }
    }

    @Test("--file mappings: SRC:DEST, executable bit kept, directories and missing files refused")
    func fileMappings() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try write([9, 9], to: directory.file("data:colon.bin"))
        try write([7], to: directory.file("script"))
        chmod(directory.file("script"), 0o700)
        let plain = try ImageFile.load(mapping: directory.file("data:colon.bin") + ":/srv/data.bin")
        #expect(plain == ImageFile(destination: "/srv/data.bin", contents: [9, 9], mode: 0o644))
        let executable = try ImageFile.load(mapping: directory.file("script") + ":/bin/script")
        #expect(executable.mode == 0o755)
        for mapping in [directory.file("script"), directory.file("script") + ":relative", ":/x", directory.path + ":/d", directory.file("missing") + ":/m"] {
            #expect(throws: ImageError.self, "\(mapping)") { try ImageFile.load(mapping: mapping) }
        }
    }

    @Test("writing: through a rename, into an existing directory only, never onto a directory")
    func writing() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let target = directory.file("out.tar")
        #expect(try ImageBuilder.writeAtomically([1, 2, 3], to: target) == false)
        #expect(try ImageBuilder.writeAtomically([4, 5], to: target) == true)
        #expect(try readBytes(target) == [4, 5])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["out.tar"])
        #expect(throws: ImageError.io("cannot write \(directory.path)/missing/out.tar: the directory \(directory.path)/missing does not exist")) {
            try ImageBuilder.writeAtomically([1], to: directory.file("missing/out.tar"))
        }
        #expect(throws: ImageError.io("cannot write \(directory.path): it is a directory")) {
            try ImageBuilder.writeAtomically([1], to: directory.path)
        }
        #expect(throws: ImageError.io("cannot write \(directory.path)/: it is a directory")) {
            try ImageBuilder.writeAtomically([1], to: directory.path + "/")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["out.tar"])
    }

    @Test("timestamps: RFC 3339, @seconds, now; and the RFC 3339 rendering")
    func timestamps() async throws {
        #expect(try ImageBuilder.parseTimestamp("2024-05-01T12:00:00Z") == 1_714_564_800)
        #expect(try ImageBuilder.parseTimestamp("2024-05-01T14:00:00+02:00") == 1_714_564_800)
        #expect(try ImageBuilder.parseTimestamp("2024-05-01T12:00:00.75Z") == 1_714_564_800)
        #expect(try ImageBuilder.parseTimestamp("@1714564800") == 1_714_564_800)
        #expect(try ImageBuilder.parseTimestamp("0") == 0)
        #expect(try ImageBuilder.parseTimestamp("now", now: Date(timeIntervalSince1970: 42)) == 42)
        for bad in ["yesterday", "2024-05-01", "1969-12-31T23:59:59Z", "@-1"] {
            #expect(throws: ImageError.invalidTimestamp(bad)) { try ImageBuilder.parseTimestamp(bad) }
        }
        #expect(try ImageBuilder.rfc3339(1_714_564_800) == "2024-05-01T12:00:00Z")
        #expect(try ImageBuilder.rfc3339(0) == "1970-01-01T00:00:00Z")
    }

    @Test("platforms: linux is the host's, wasi is wasip1/wasm, explicit OS/ARCH[/VARIANT]")
    func platforms() async throws {
        #expect(try ImagePlatform.parse("linux") == ImagePlatform.host)
        #expect(try ImagePlatform.parse("wasi") == OCI.Platform(architecture: "wasm", os: "wasip1"))
        #expect(try ImagePlatform.parse("wasi/wasm") == OCI.Platform(architecture: "wasm", os: "wasi"))
        #expect(try ImagePlatform.parse("linux/arm64/v8") == OCI.Platform(architecture: "arm64", os: "linux", variant: "v8"))
        for bad in ["", "windows/", "Linux/amd64", "a/b/c/d", "wasm32"] {
            #expect(throws: ImageError.invalidPlatform(bad)) { try ImagePlatform.parse(bad) }
        }
    }

    @Test("inspect reads back a built archive and catches a tampered blob")
    func inspect() async throws {
        var req = try request(moduleWithCustomSection("inspect"), reference: "localhost:5000/a/b", platform: ImagePlatform.wasi)
        req.arguments = ["x"]
        let image = try ImageBuilder.build(req)
        let summaries = try ImageArchive.inspect(bytes: image.archive)
        try #require(summaries.count == 1)
        let summary = summaries[0]
        #expect(summary.reference == "localhost:5000/a/b:latest")
        #expect(summary.platform == ImagePlatform.wasi)
        #expect(summary.manifestDigest == image.manifestDigest)
        #expect(summary.entrypoint == ["/app.wasm"] && summary.cmd == ["x"])
        #expect(summary.layers.map(\.digest) == [image.layerDigest])
        #expect(summary.module?.path == "/app.wasm" && summary.module?.isWasm == true)
        #expect(summary.module?.size == req.module.count)

        // Flip a byte inside the module, in the layer blob: the layer digest no longer matches.
        var tampered = image.archive
        let needle = Array("inspect".utf8)
        let at = try #require((0..<(tampered.count - needle.count)).first { Array(tampered[$0..<($0 + needle.count)]) == needle })
        tampered[at] ^= 0x20
        #expect(throws: ImageError.invalidArchive("blob \(image.layerDigest) does not match its digest")) {
            try ImageArchive.inspect(bytes: tampered)
        }
    }
}
