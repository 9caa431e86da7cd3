import Testing

@testable import WasmletShim

@Suite struct ShimArgumentsTests {
    @Test func containerdStartCommandLine() {
        let parsed = ShimArguments(parsing: [
            "-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock", "-publish-binary",
            "/usr/bin/containerd", "-id", "abc123", "-debug", "start",
        ])
        #expect(parsed.namespace == "k8s.io")
        #expect(parsed.address == "/run/containerd/containerd.sock")
        #expect(parsed.publishBinary == "/usr/bin/containerd")
        #expect(parsed.id == "abc123")
        #expect(parsed.debug)
        #expect(parsed.action == "start")
    }

    @Test func equalsFormsDoubleDashesAndBundle() {
        let parsed = ShimArguments(parsing: [
            "--namespace=default", "-address=/a.sock", "--id", "x", "-bundle", "/run/b", "-debug=false", "delete",
        ])
        #expect(parsed.namespace == "default")
        #expect(parsed.address == "/a.sock")
        #expect(parsed.id == "x")
        #expect(parsed.bundle == "/run/b")
        #expect(!parsed.debug)
        #expect(parsed.action == "delete")
    }

    @Test func unknownFlagsAreIgnored() {
        // An unknown boolean flag right before the action, and an unknown flag with a value.
        var parsed = ShimArguments(parsing: ["-namespace", "n", "-id", "i", "-future-flag", "start"])
        #expect(parsed.action == "start")
        #expect(parsed.namespace == "n")
        parsed = ShimArguments(parsing: ["-socket-mode", "0600", "-id", "i", "-new-bool", "-namespace", "n", "delete"])
        #expect(parsed.action == "delete")
        #expect(parsed.id == "i")
        #expect(parsed.namespace == "n")
        parsed = ShimArguments(parsing: ["-x=1", "-id", "i", "start", "extra"])
        #expect(parsed.action == "start")
        #expect(parsed.rest == ["extra"])
    }

    @Test func missingValuesAndNoAction() {
        let parsed = ShimArguments(parsing: ["-namespace"])
        #expect(parsed.namespace == "")
        #expect(parsed.action == "")
        #expect(ShimArguments(parsing: []).action == "")
        #expect(ShimArguments(parsing: ["-v"]).version)
    }
}
