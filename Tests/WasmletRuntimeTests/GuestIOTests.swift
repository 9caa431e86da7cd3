import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

@Suite struct GuestIOTests {
    @Test func helloPrintsAndExitsZero() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "hello")
        #expect(result.stdout == "hello from wasmlet\n")
        #expect(result.exit.code == 0)
        #expect(result.exit.reason == .exited)
        #expect(result.exit.fuelConsumed > 0, "metering is on by default, so consumption is reported")
        #expect(result.exit.peakMemoryBytes > 0)
        #expect(result.exit.startedAt != nil)
    }

    @Test func argsAndOnlyTheGivenEnvironment() async throws {
        setenv("WASMLET_HOST_SECRET", "leaked", 1)
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "echo", args: ["one", "two words"], env: ["GREETING": "hi"])
        #expect(result.stdout.contains("argv[1]=one"))
        #expect(result.stdout.contains("argv[2]=two words"))
        #expect(result.stdout.contains("env GREETING=hi"))
        #expect(!result.stdout.contains("WASMLET_HOST_SECRET"), "host environment must never reach the guest")
        #expect(!result.stdout.contains("PATH="))
    }

    @Test func exitCodeAndStderrAreFaithful() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "echo", args: ["--stderr", "oops", "--exit", "7"])
        #expect(result.exit.code == 7)
        #expect(result.exit.reason == .exited)
        #expect(result.stderr.contains("oops"))
    }

    @Test func stdinFromFile() async throws {
        let directory = try Fixtures.temporaryDirectory()
        let input = directory.appendingPathComponent("in.txt")
        try "line one\nline two\n".write(to: input, atomically: true, encoding: .utf8)
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cat", stdin: input.path)
        #expect(result.stdout == "line one\nline two\n")
        #expect(result.exit.code == 0)
    }

    @Test func stdioThroughFIFOs() async throws {
        let directory = try Fixtures.temporaryDirectory()
        let stdinPath = directory.appendingPathComponent("stdin").path
        let stdoutPath = directory.appendingPathComponent("stdout").path
        #expect(mkfifo(stdinPath, 0o600) == 0)
        #expect(mkfifo(stdoutPath, 0o600) == 0)
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("cat"))
        let key = InstanceKey(namespace: "test", id: Fixtures.uniqueID())
        // As containerd does: open our reading end of stdout first, without blocking.
        let reader = open(stdoutPath, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, args: ["cat"],
                                        stdio: StdioSpec(stdin: stdinPath, stdout: stdoutPath)))
        try runtime.start(key)
        let writer = open(stdinPath, O_WRONLY)  // blocks until the guest side has opened stdin
        #expect(writer >= 0)
        let text = "through a fifo\n"
        #expect(write(writer, text, text.utf8.count) == text.utf8.count)
        close(writer)
        let exit = try await runtime.wait(key)
        #expect(exit.code == 0)
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = read(reader, &buffer, buffer.count)
        close(reader)
        #expect(count == text.utf8.count)
        #expect(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self) == text)
    }

    /// containerd's CloseIO(stdin) when its client's writer never opened the FIFO (`ctr run cat
    /// </dev/null`): no writer ever came and went, so poll never reports a hang-up by itself.
    /// Before the start (the flag is set before the guest opens its end) and after the guest's
    /// reader is open (found in /proc/self/fd), the guest reads end-of-file and exits 0.
    @Test(arguments: [true, false]) func closeStdinEndsAFIFOThatNoWriterEverOpened(beforeStart: Bool) async throws {
        let directory = try Fixtures.temporaryDirectory()
        let stdinPath = directory.appendingPathComponent("stdin").path
        #expect(mkfifo(stdinPath, 0o600) == 0)
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("cat"))
        let key = InstanceKey(namespace: "test", id: Fixtures.uniqueID())
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, args: ["cat"], stdio: StdioSpec(stdin: stdinPath)))
        if beforeStart { try runtime.closeStdin(key) }
        try runtime.start(key)
        if !beforeStart {
            #expect(await eventually(every: .milliseconds(5)) { Self.processHasOpen(stdinPath) }, "the guest never opened its stdin")
            try runtime.closeStdin(key)
        }
        let ended = try await eventually(every: .milliseconds(5)) { try runtime.inspect(key).state == .exited }
        #expect(ended, "the guest still waits on its stdin after closeStdin")
        if !ended { try runtime.kill(key) }
        let exit = try await runtime.wait(key)
        #expect(exit.reason == .exited)
        #expect(exit.code == 0)
        #expect(!Self.processHasOpen(stdinPath), "the guest's end of the FIFO is closed at exit")
    }

    @Test func closeStdinOfAnUnknownInstanceIsNotFound() throws {
        let runtime = try Fixtures.makeRuntime()
        #expect(throws: RuntimeError.self) { try runtime.closeStdin(InstanceKey(namespace: "test", id: "nobody")) }
    }

    /// Whether a descriptor of this process is open on `path` (a FIFO shows its path there).
    static func processHasOpen(_ path: String) -> Bool {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return false }
        return entries.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) == path }
    }

    @Test func stdoutFIFOWithoutReaderFailsToStartClearly() async throws {
        let directory = try Fixtures.temporaryDirectory()
        let stdoutPath = directory.appendingPathComponent("stdout").path
        #expect(mkfifo(stdoutPath, 0o600) == 0)
        let runtime = try Fixtures.makeRuntime { $0.fifoOpenTimeout = .milliseconds(200) }
        let module = try runtime.loadModule(path: Fixtures.guest("hello"))
        let key = InstanceKey(namespace: "test", id: Fixtures.uniqueID())
        try runtime.create(InstanceSpec(key: key, moduleDigest: module.digest, stdio: StdioSpec(stdout: stdoutPath)))
        try runtime.start(key)
        let exit = try await runtime.wait(key)
        #expect(exit.reason == .failedToStart)
        #expect(exit.code == 126)
        #expect(exit.message.contains("no reader"))
    }

    @Test func missingStdinFileFailsToStart() async throws {
        let runtime = try Fixtures.makeRuntime()
        let result = try await Fixtures.run(runtime, guest: "cat", stdin: "/nonexistent/input")
        #expect(result.exit.reason == .failedToStart)
        #expect(result.exit.message.contains("/nonexistent/input"))
    }

    @Test func guestWritingToClosedPipeGetsAnErrorNotTheDaemon() async throws {
        let directory = try Fixtures.temporaryDirectory()
        let stdoutPath = directory.appendingPathComponent("stdout").path
        #expect(mkfifo(stdoutPath, 0o600) == 0)
        let reader = open(stdoutPath, O_RDONLY | O_NONBLOCK)
        let runtime = try Fixtures.makeRuntime()
        let hello = try runtime.loadModule(path: Fixtures.guest("echo"))
        let key = InstanceKey(namespace: "test", id: Fixtures.uniqueID())
        try runtime.create(InstanceSpec(key: key, moduleDigest: hello.digest, args: ["echo", "x"],
                                        stdio: StdioSpec(stdout: stdoutPath)))
        close(reader)  // the reader goes away before the guest writes: SIGPIPE must not kill us
        try runtime.start(key)
        let exit = try await runtime.wait(key)
        #expect([ExitReason.exited, .failedToStart].contains(exit.reason))
    }
}
