import Foundation
import Testing
import WasmletAPI
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The wasmletctl binary against a fake in-process wasmlet.v1.Runtime (see FakeDaemon).
@Suite(.serialized) struct CLIFakeDaemonTests {
    @Test func noDaemonIsOneLineAndExitCode1() async throws {
        let result = try await wasmletctl(["--socket", "/tmp/nonexistent.sock", "list"])
        #expect(result.status == 1)
        #expect(result.stderr == "wasmletctl: cannot connect: is wasmletd running? tried /tmp/nonexistent.sock\n")
        #expect(result.stdout == "")
    }

    @Test func socketFromEnvironmentAndAfterSubcommand() async throws {
        let fromEnvironment = try await wasmletctl(["stats"], environment: ["WASMLET_SOCKET": "/tmp/nonexistent-env.sock"])
        #expect(fromEnvironment.status == 1)
        #expect(fromEnvironment.stderr == "wasmletctl: cannot connect: is wasmletd running? tried /tmp/nonexistent-env.sock\n")
        // --socket beats WASMLET_SOCKET, also when given after the subcommand.
        let after = try await wasmletctl(
            ["inspect", "x", "--socket", "/tmp/nonexistent-flag.sock"], environment: ["WASMLET_SOCKET": "/tmp/other.sock"])
        #expect(after.stderr == "wasmletctl: cannot connect: is wasmletd running? tried /tmp/nonexistent-flag.sock\n")
        #expect(after.status == 1)
    }

    @Test func badSignalIsOneLine() async throws {
        let result = try await wasmletctl(["--socket", "/tmp/nonexistent.sock", "kill", "x", "-s", "NOPE"])
        #expect(result.status == 1)
        #expect(result.stderr == "wasmletctl: unknown signal \"NOPE\"; use a name like TERM, SIGKILL, INT or a number\n")
    }

    @Test func runStreamsOutputAndPassesExitCode() async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        let result = try await wasmletctl([
            "--socket", daemon.socketPath, "run", "--id", "r1", "--no-rm", "--env", "A=1",
            "examples/build/echo.wasm", "x y", "--exit", "3",
        ])
        #expect(result.status == 3)
        #expect(result.stdout == "argv[0]=echo.wasm\nargv[1]=x y\nargv[2]=--exit\nargv[3]=3\nenv A=1\n")
        #expect(result.stderr == "to stderr\n")
        let request = try #require(daemon.request(namespace: "default", id: "r1"))
        #expect(request.path == repositoryRoot + "/examples/build/echo.wasm")
        #expect(request.stdout.hasSuffix("/stdout") && request.stderr.hasSuffix("/stderr"))
        // The private FIFO directory is gone afterwards.
        #expect(!FileManager.default.fileExists(atPath: (request.stdout as NSString).deletingLastPathComponent))
    }

    @Test func runWithRmDeletesAndHonoursLimits() async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        let result = try await wasmletctl([
            "run", "--socket", daemon.socketPath, "--memory", "16M", "--fuel", "1000", "--timeout", "5s",
            "--dir", "/tmp:/t:ro", "-l", "app=demo", "examples/build/hello.wasm",
        ])
        #expect(result.status == 0)
        #expect(result.stdout == "argv[0]=hello.wasm\n")
        #expect(daemon.instanceCount() == 0)  // --rm is the default
    }

    @Test func runRecordsRequestFields() async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        let result = try await wasmletctl([
            "run", "--socket", daemon.socketPath, "--no-rm", "--id", "lim", "-n", "ns1", "--memory", "16M",
            "--fuel", "1000", "--timeout", "5s", "--dir", "/tmp:/t:ro", "-l", "app=demo", "examples/build/hello.wasm",
        ])
        #expect(result.status == 0)
        let request = try #require(daemon.request(namespace: "ns1", id: "lim"))
        #expect(request.limits.memoryBytes == 16 << 20)
        #expect(request.limits.fuel == 1000)
        #expect(request.limits.timeoutMs == 5000)
        #expect(request.preopens.map { "\($0.hostPath)|\($0.guestPath)|\($0.readonly)" } == ["/tmp|/t|true"])
        #expect(request.labels == ["app": "demo"])
    }

    @Test func runMissingModuleIsOneLine() async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        let result = try await wasmletctl(["--socket", daemon.socketPath, "run", "/nope/missing.wasm"])
        #expect(result.status == 1)
        #expect(result.stderr == "wasmletctl: cannot read module /nope/missing.wasm: No such file or directory\n")
        #expect(daemon.instanceCount() == 0)
    }

    @Test func ctrlCKillsTheInstance() async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "WASMLET_SOCKET")
        let child = try Child(
            wasmletctlPath, ["--socket", daemon.socketPath, "run", "--id", "s1", "examples/build/hello.wasm", "--sleep"],
            environment: env, currentDirectory: repositoryRoot)
        let deadline = ContinuousClock.now + .seconds(20)
        while !child.stdout.contains("sleeping") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(child.stdout.contains("sleeping"))
        child.signal(SIGINT)
        let result = await child.finish()
        #expect(result.status == 130)
        #expect(daemon.kills.withLock { $0 } == ["default/s1:2"])
        #expect(result.stderr.contains("wasmletctl: default/s1 killed by signal 2 (exit code 130)"))
        #expect(daemon.instanceCount() == 0)
    }

    /// The guest's output can arrive before Start's answer does: a Ctrl-C in that window is
    /// forwarded as a Kill once the answer comes, instead of ending wasmletctl and leaving the
    /// guest running in the daemon.
    @Test func ctrlCWhileStartIsUnansweredKillsTheInstance() async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        daemon.startAnswers.close()
        let child = try Child(
            wasmletctlPath, ["--socket", daemon.socketPath, "run", "--id", "s2", "examples/build/hello.wasm", "--sleep"],
            currentDirectory: repositoryRoot)
        #expect(await eventually { child.stdout.contains("sleeping\n") })
        child.signal(SIGINT)
        // wasmletctl must still be there, waiting for the answer, not ended by the signal.
        #expect(child.child.poll() == nil)
        daemon.startAnswers.open()
        let result = await child.finish()
        #expect(result.status == 130)
        #expect(daemon.kills.withLock { $0 } == ["default/s2:2"])
        #expect(daemon.instanceCount() == 0)
    }

    /// A Ctrl-C while Create is outstanding: the instance is deleted unstarted (with --no-rm,
    /// killed unstarted), never left behind in the created state.
    @Test(arguments: [true, false])
    func ctrlCWhileCreateIsUnansweredLeavesNoLiveInstance(rm: Bool) async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        daemon.createAnswers.close()
        let child = try Child(
            wasmletctlPath, ["--socket", daemon.socketPath, "run", "--id", "c2"] + (rm ? [] : ["--no-rm"])
                + ["examples/build/hello.wasm", "--sleep"],
            currentDirectory: repositoryRoot)
        #expect(await eventually { daemon.instanceCount() == 1 })
        child.signal(SIGINT)
        #expect(child.child.poll() == nil)
        daemon.createAnswers.open()
        let result = await child.finish()
        #expect(result.status == 130)
        // The signal may be seen before or after Create's answer is read: either the guest
        // never starts, or it is killed once started. Never is it left created or running.
        let started = !daemon.starts.withLock { $0 }.isEmpty
        if started {
            #expect(daemon.kills.withLock { $0 } == ["default/c2:2"])
        } else {
            #expect(result.stderr.contains("default/c2 interrupted by signal 2 before it started; \(rm ? "deleted" : "killed")"))
        }
        if rm {
            #expect(daemon.instanceCount() == 0)
        } else {
            let instance = daemon.instance(namespace: "default", id: "c2")
            #expect(instance?.state == .exited && instance?.exit.reason == .killed && instance?.exit.signal == 2)
        }
    }

    @Test func listInspectKillDeleteAndErrors() async throws {
        let daemon = try await FakeDaemon.start()
        defer { Task { await daemon.stop() } }
        let socket = ["--socket", daemon.socketPath]
        for (id, namespace) in [("a", "default"), ("b", "other")] {
            let made = try await wasmletctl(socket + ["run", "--no-rm", "--id", id, "-n", namespace, "-l", "app=\(id)",
                                                      "examples/build/hello.wasm"])
            #expect(made.status == 0)
        }
        let table = try await wasmletctl(socket + ["list"])
        #expect(table.status == 0)
        let lines = table.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines.first == "NAMESPACE   ID   STATE    EXIT   MODULE         AGE")
        #expect(lines.dropFirst().first?.hasPrefix("default     a    exited   0      feedfacecafe   ") == true)

        let filtered = try await wasmletctl(socket + ["list", "-l", "app=b", "-o", "json"])
        #expect(filtered.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(filtered.stdout.utf8)) as? [String: Any]
        let instances = try #require(json?["instances"] as? [[String: Any]])
        #expect(instances.map { $0["id"] as? String } == ["b"])

        let byNamespace = try await wasmletctl(socket + ["list", "--namespace", "other"])
        #expect(byNamespace.stdout.split(separator: "\n").count == 2)

        let inspect = try await wasmletctl(socket + ["inspect", "a"])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.hasPrefix("{\n  \"namespace\": \"default\",\n  \"id\": \"a\",\n  \"state\": \"exited\","))

        let missing = try await wasmletctl(socket + ["inspect", "x"])
        #expect(missing.status == 1)
        #expect(missing.stderr == "wasmletctl: instance default/x not found\n")

        let killExited = try await wasmletctl(socket + ["kill", "a", "-s", "KILL"])
        #expect(killExited.status == 1)
        #expect(killExited.stderr == "wasmletctl: instance default/a is not running\n")

        let deleted = try await wasmletctl(socket + ["delete", "-n", "other", "b"])
        #expect(deleted.status == 0)
        #expect(daemon.request(namespace: "other", id: "b") == nil)

        let stats = try await wasmletctl(socket + ["stats", "-o", "json"])
        #expect(stats.status == 0 && stats.stdout.contains("\"uptimeSeconds\": 42"))

        let version = try await wasmletctl(socket + ["version"])
        #expect(version.status == 0)
        #expect(version.stdout.contains("Client:\n  Version: 0.1.0\n") && version.stdout.contains("Version:  9.9.9-fake"))
    }
}
