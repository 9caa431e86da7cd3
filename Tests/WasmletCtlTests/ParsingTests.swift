import Testing
import WasmletAPI
@testable import WasmletClient

@Suite struct ParsingTests {
    @Test(arguments: [
        ("TERM", 15), ("SIGTERM", 15), ("sigterm", 15), ("term", 15), ("KILL", 9), ("SIGKILL", 9),
        ("9", 9), ("15", 15), ("INT", 2), ("HUP", 1), ("USR1", 10), (" 2 ", 2), ("64", 64),
    ] as [(String, UInt32)])
    func signals(text: String, expected: UInt32) throws {
        #expect(try ArgumentParsing.parseSignal(text) == expected)
    }

    @Test(arguments: ["", "FOO", "SIG", "0", "65", "-9", "SIGFOO", "9x"])
    func badSignals(text: String) {
        #expect(throws: ParseError.self) { try ArgumentParsing.parseSignal(text) }
    }

    @Test(arguments: [
        ("65536", 65536), ("64K", 64 << 10), ("64k", 64 << 10), ("16M", 16 << 20), ("16MB", 16 << 20),
        ("16MiB", 16 << 20), ("1G", 1 << 30), ("2g", 2 << 30),
    ] as [(String, UInt64)])
    func sizes(text: String, expected: UInt64) throws {
        #expect(try ArgumentParsing.parseBytes(text) == expected)
    }

    @Test(arguments: ["", "0", "K", "12X", "-1", "1.5M", "99999999999999999999G", "17179869184G"])
    func badSizes(text: String) {
        #expect(throws: ParseError.self) { try ArgumentParsing.parseBytes(text) }
    }

    @Test(arguments: [
        ("1500", 1500), ("1500ms", 1500), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000),
    ] as [(String, UInt64)])
    func durations(text: String, expected: UInt64) throws {
        #expect(try ArgumentParsing.parseMilliseconds(text) == expected)
    }

    @Test(arguments: ["", "0", "s", "1.5s", "10d", "abc"])
    func badDurations(text: String) {
        #expect(throws: ParseError.self) { try ArgumentParsing.parseMilliseconds(text) }
    }

    @Test func environment() throws {
        let pairs = ["A=1", "EMPTY=", "EQ=a=b"]
        #expect(try ArgumentParsing.parseEnvironment(pairs) == pairs)
        #expect(throws: ParseError.self) { try ArgumentParsing.parseEnvironment(["NOEQUALS"]) }
        #expect(throws: ParseError.self) { try ArgumentParsing.parseEnvironment(["=value"]) }
    }

    @Test func directoryMappings() throws {
        let cwd = "/home/me/work"
        let plain = try ArgumentParsing.parsePreopen("/data", currentDirectory: cwd)
        #expect(plain.hostPath == "/data" && plain.guestPath == "/data" && !plain.readonly)

        let mapped = try ArgumentParsing.parsePreopen("data:/in:ro", currentDirectory: cwd)
        #expect(mapped.hostPath == "/home/me/work/data")
        #expect(mapped.guestPath == "/in")
        #expect(mapped.readonly)

        let rw = try ArgumentParsing.parsePreopen("../x/./y:/out:rw", currentDirectory: cwd)
        #expect(rw.hostPath == "/home/me/x/y" && rw.guestPath == "/out" && !rw.readonly)

        let readOnlyNoGuest = try ArgumentParsing.parsePreopen("/srv:ro", currentDirectory: cwd)
        #expect(readOnlyNoGuest.hostPath == "/srv" && readOnlyNoGuest.guestPath == "/srv" && readOnlyNoGuest.readonly)

        for bad in ["", ":/g", "/a:/b:/c", "/a:", "/a:/b:xx"] {
            #expect(throws: ParseError.self, "\(bad)") { try ArgumentParsing.parsePreopen(bad, currentDirectory: cwd) }
        }
    }

    @Test func labelSelectors() throws {
        #expect(try ArgumentParsing.parseLabels([]) == [:])
        #expect(try ArgumentParsing.parseLabels(["app=web"]) == ["app": "web"])
        #expect(try ArgumentParsing.parseLabels(["app=web", "tier=1,zone=eu"]) == ["app": "web", "tier": "1", "zone": "eu"])
        #expect(try ArgumentParsing.parseLabels(["empty="]) == ["empty": ""])
        #expect(try ArgumentParsing.parseLabels(["a=1", "a=1"]) == ["a": "1"])
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["app"]) }
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["=web"]) }
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["a=1", "a=2"]) }
        #expect(throws: ParseError.self) { try ArgumentParsing.parseLabels(["a=1,"]) }
    }

    @Test func absolutePaths() {
        #expect(ArgumentParsing.absolutePath("examples/build/hello.wasm", currentDirectory: "/work/main")
            == "/work/main/examples/build/hello.wasm")
        #expect(ArgumentParsing.absolutePath("/abs/./x/../y.wasm", currentDirectory: "/ignored") == "/abs/y.wasm")
        #expect(ArgumentParsing.absolutePath("../../../a", currentDirectory: "/one") == "/a")
    }
}

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
