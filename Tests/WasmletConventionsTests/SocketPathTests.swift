import Testing
import WasmletConventions

@Suite struct SocketResolutionTests {
    @Test func explicitWinsOverEverything() {
        let path = WasmletSocketPath.resolve(
            explicit: "/tmp/a.sock", environment: ["WASMLET_SOCKET": "/tmp/b.sock", "XDG_RUNTIME_DIR": "/run/user/1"],
            isRoot: true)
        #expect(path == "/tmp/a.sock")
    }

    @Test func environmentVariableBeatsDefaults() {
        #expect(WasmletSocketPath.resolve(explicit: nil, environment: ["WASMLET_SOCKET": "/tmp/b.sock"], isRoot: true)
            == "/tmp/b.sock")
        #expect(WasmletSocketPath.resolve(explicit: "", environment: ["WASMLET_SOCKET": "/tmp/b.sock"], isRoot: false)
            == "/tmp/b.sock")
    }

    @Test func rootDefault() {
        #expect(WasmletSocketPath.resolve(explicit: nil, environment: ["XDG_RUNTIME_DIR": "/run/user/0"], isRoot: true)
            == "/run/wasmlet/wasmlet.sock")
        #expect(WasmletSocketPath.resolve(explicit: nil, environment: ["WASMLET_SOCKET": ""], isRoot: true)
            == "/run/wasmlet/wasmlet.sock")
    }

    @Test func userDefaults() {
        #expect(WasmletSocketPath.resolve(explicit: nil, environment: ["XDG_RUNTIME_DIR": "/run/user/1000"], isRoot: false)
            == "/run/user/1000/wasmlet/wasmlet.sock")
        #expect(WasmletSocketPath.resolve(
            explicit: nil, environment: ["XDG_RUNTIME_DIR": "", "HOME": "/home/u"], isRoot: false)
            == "/home/u/.wasmlet/wasmlet.sock")
        #expect(WasmletSocketPath.resolve(
            explicit: nil, environment: ["HOME": "/home/u"], isRoot: false, homeDirectory: "/home/other")
            == "/home/other/.wasmlet/wasmlet.sock")
    }
}

@Suite struct ShimMetadataKeyTests {
    /// The wire names: a shim and a daemon of different builds must still understand each other.
    @Test func names() {
        #expect(ShimMetadataKey.shimPID == "wasmlet-shim-pid")
        #expect(ShimMetadataKey.namespace == "wasmlet-shim-namespace")
        #expect(ShimMetadataKey.group == "wasmlet-shim-group")
        #expect(ShimMetadataKey.ttrpcAddress == "wasmlet-shim-ttrpc-address")
        #expect(ShimMetadataKey.cleanup == "wasmlet-shim-cleanup")
        #expect(ShimMetadataKey.containerdNamespace == "containerd-namespace-ttrpc")
    }
}
