import Testing

@testable import WasmletImage

@Suite("ImageReference")
struct ImageReferenceTests {
    static let digest = "sha256:" + String(repeating: "ab", count: 32)

    @Test(
        "normalization as Docker and containerd do it",
        arguments: [
            ("hello", "docker.io/library/hello:latest", "latest"),
            ("hello:v1", "docker.io/library/hello:v1", "v1"),
            ("wasmlet/hello", "docker.io/wasmlet/hello:latest", "latest"),
            ("docker.io/hello", "docker.io/library/hello:latest", "latest"),
            ("index.docker.io/wasmlet/hello:wasi", "docker.io/wasmlet/hello:wasi", "wasi"),
            ("ghcr.io/x/y:tag", "ghcr.io/x/y:tag", "tag"),
            ("ghcr.io/x/y", "ghcr.io/x/y:latest", "latest"),
            ("localhost:5000/a/b", "localhost:5000/a/b:latest", "latest"),
            ("localhost:5000/a/b:1.0-rc_1", "localhost:5000/a/b:1.0-rc_1", "1.0-rc_1"),
            ("localhost/a", "localhost/a:latest", "latest"),
            ("registry.example.com:443/team/app__x/v.2:T", "registry.example.com:443/team/app__x/v.2:T", "T"),
            ("a-b--c/d_e", "docker.io/a-b--c/d_e:latest", "latest"),
        ])
    func normalizes(input: String, expected: String, tag: String) throws {
        let reference = try ImageReference(parsing: input)
        #expect(reference.description == expected)
        #expect(reference.tag == tag)
        #expect(reference.digest == nil)
    }

    @Test("a digest is parsed, and refused by the builder")
    func digests() throws {
        let pinned = try ImageReference(parsing: "ghcr.io/x/y@" + Self.digest)
        #expect(pinned.tag == nil && pinned.digest == Self.digest)
        #expect(pinned.description == "ghcr.io/x/y@" + Self.digest)
        let both = try ImageReference(parsing: "hello:v1@" + Self.digest)
        #expect(both.description == "docker.io/library/hello:v1@" + Self.digest)
        var request = ImageBuildRequest(module: minimalModule, modulePath: "m.wasm", reference: pinned, platform: ImagePlatform.wasi)
        request.created = 0
        #expect(throws: ImageError.digestInReference(pinned.description)) { try ImageBuilder.build(request) }
    }

    @Test(
        "invalid references are refused with a reason",
        arguments: [
            "", "Hello", "hello world", "a//b", "-a", "a-", "a..b", "a___b", "hello:", "hello:-x",
            "hello:" + String(repeating: "t", count: 129), "ghcr.io/x/Y", "ghcr.io/x/y:tag:extra", "/hello",
            "hello/", "exa_mple.com/a", "-bad.com/a", "host:port/a", "hello@sha256:short", "hello@md5:" + String(repeating: "0", count: 32),
            "h\u{e9}llo", "ghcr.io/" + String(repeating: "a", count: 250),
        ])
    func refuses(input: String) {
        do {
            let parsed = try ImageReference(parsing: input)
            Issue.record("\"\(input)\" was accepted as \(parsed)")
        } catch let error as ImageError {
            guard case .invalidReference(let text, let why) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(text == input)
            #expect(!why.isEmpty)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("an upper-case first component is a registry, as in distribution/reference")
    func upperCaseDomain() throws {
        #expect(try ImageReference(parsing: "Registry/app").description == "Registry/app:latest")
    }
}
