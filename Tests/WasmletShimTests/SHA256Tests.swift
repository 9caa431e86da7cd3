import Foundation
import Testing

@testable import WasmletShim

@Suite struct SHA256Tests {
    @Test func standardVectors() {
        #expect(SHA256.hexDigest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hexDigest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hexDigest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func oneMillionBytes() {
        // FIPS 180-2's long vector: one million "a".
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256.hex(SHA256.hash(input)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Fed in uneven pieces, the digest is the same.
        var hasher = SHA256()
        var offset = 0
        var piece = 1
        while offset < input.count {
            let end = min(input.count, offset + piece)
            hasher.update(input[offset..<end])
            offset = end
            piece = piece * 3 % 1001 + 1
        }
        #expect(SHA256.hex(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Every length around the padding boundaries (55, 56, 63, 64, 119, 120...) against sha256sum.
    @Test func paddingBoundariesAgreeWithSha256sum() async throws {
        let tool = "/usr/bin/sha256sum"
        guard FileManager.default.isExecutableFile(atPath: tool) else { return }
        let file = NSTemporaryDirectory() + "wshim-sha-\(UUID().uuidString)"
        defer { unlink(file) }
        for length in [0, 1, 54, 55, 56, 57, 63, 64, 65, 118, 119, 120, 127, 128, 129] {
            let input = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            #expect(FileManager.default.createFile(atPath: file, contents: Data(input)))
            // runProcess (posix_spawn + waitpid), not Foundation's Process: see runProcess.
            let result = try await runProcess(tool, [file], environment: ["LC_ALL": "C"], directory: "/")
            #expect(result.status == 0, "\(result.stderr)")
            #expect(SHA256.hex(SHA256.hash(input)) == String(result.text.prefix(64)), "length \(length)")
        }
    }

    @Test func shimSocketPathFollowsContainerdConvention() {
        let path = ShimSocketPath.path(
            address: "/run/containerd/containerd.sock", namespace: "k8s.io", group: "abc", directory: "/run/containerd/s")
        #expect(path == "/run/containerd/s/" + SHA256.hexDigest("/run/containerd/containerd.sock/k8s.io/abc"))
        #expect(path.utf8.count == "/run/containerd/s/".utf8.count + 64)
        // filepath.Join drops a trailing slash of the address; so does the shim.
        #expect(
            ShimSocketPath.path(
                address: "/run/containerd/containerd.sock/", namespace: "k8s.io", group: "abc",
                directory: "/run/containerd/s") == path)
    }
}
