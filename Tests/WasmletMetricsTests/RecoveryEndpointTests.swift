import Foundation
import Glibc
import Testing
import WasmletAPI
import WasmletTestSupport

// Daemons here are stopped by DaemonProcess's deinit (SIGKILL); `withExtendedLifetime` keeps
// each one alive to the end of its test.

extension DaemonEndToEndTests {
    /// The metrics endpoint while, and after, a daemon recovers its state.
    @Suite struct RecoveryEndpoint {
        /// A state directory left by a daemon killed with an instance created; the next daemon
        /// is held before recovery by the test-only WASMLET_TEST_RECOVERY_GATE. Meanwhile the
        /// endpoint answers: /readyz 503 "recovering state", /healthz 200, /metrics 200, and the
        /// API socket is not served. Once recovery may go on, /readyz turns 200 and the
        /// recovered instance is there.
        @Test func readyzAnswers503WhileRecoveringThen200() async throws {
            let directory = try TemporaryDirectory()
            let state = try await stateLeftByKilledDaemon(directory) { early, _ in
                try await createInstance(early, "left", module: "hello")
            }

            let gate = directory.path + "/recover-now"
            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, stateDirectory: state, arguments: ["--metrics-address", "127.0.0.1:\(port)"],
                environment: ["WASMLET_TEST_RECOVERY_GATE": gate], waitForSocket: false, logName: "second.log")
            #expect(
                await eventually(timeout: .seconds(60), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 503 },
                "the endpoint must answer while recovery is held; log:\n\(daemon.log)")
            let recovering = try get(port: port, "/readyz")
            #expect(recovering.status == 503)
            #expect(body(of: recovering.text) == "recovering state\n")
            #expect(try get(port: port, "/healthz").status == 200)
            let metrics = try get(port: port, "/metrics")
            #expect(metrics.status == 200)
            #expect(sampleValue(body(of: metrics.text), "wasmlet_instances{state=\"created\"}") == 0)
            #expect((try? RawConnection(daemon.socketPath)) == nil, "the API is not served before the state is recovered")
            #expect(daemon.log.contains("holding recovery"))

            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            #expect(
                await eventually(timeout: .seconds(60), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 },
                "log:\n\(daemon.log)")
            #expect(body(of: try get(port: port, "/readyz").text) == "ready\n")
            // Ready means serving: the API socket accepts, and the state is recovered.
            let client = try await daemon.client()
            #expect(try await client.inspect("left").exit.reason == .daemonRestarted)
            await client.close()
            withExtendedLifetime(daemon) {}
        }

        /// The same under socket activation: the inherited "metrics" descriptor is served before
        /// recovery, so the connection that made systemd-socket-activate start the daemon gets
        /// 503 "recovering state" instead of waiting for a long recovery.
        @Test(.enabled(if: access("/usr/bin/systemd-socket-activate", X_OK) == 0))
        func socketActivatedReadyzAnswersWhileRecovering() async throws {
            let directory = try TemporaryDirectory()
            let gate = directory.path + "/recover-now"
            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, launcher: "/usr/bin/systemd-socket-activate",
                launcherArguments: ["-l", "127.0.0.1:\(port)", "--fdname=metrics", "-E", "WASMLET_TEST_RECOVERY_GATE=\(gate)"],
                waitForSocket: false)
            #expect(
                await eventually(timeout: .seconds(60), every: .milliseconds(50)) {
                    guard let answer = try? get(port: port, "/readyz") else { return false }
                    return answer.status == 503 && body(of: answer.text) == "recovering state\n"
                }, "log:\n\(daemon.log)")
            // The daemon logs this once the server has taken the descriptor, which can be after
            // it has answered: wait for the line, not only the answer.
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { daemon.log.contains("serving metrics on the socket-activated descriptor") }, "log:\n\(daemon.log)")
            _ = FileManager.default.createFile(atPath: gate, contents: nil)
            #expect(
                await eventually(timeout: .seconds(60), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 },
                "log:\n\(daemon.log)")
            try await daemon.waitUntilServing()
            withExtendedLifetime(daemon) {}
        }

        /// Instances recovered from disk as exited (by themselves, or daemon_restarted) count in
        /// wasmlet_instances{state="exited"} beside the runtime's own, and leave it when deleted;
        /// promtool finds nothing in any scrape.
        @Test func recoveredInstancesCountAsExited() async throws {
            let directory = try TemporaryDirectory()
            let state = try await stateLeftByKilledDaemon(directory) { early, state in
                try await createInstance(early, "done", module: "hello")
                _ = try await early.start("done")
                #expect(try await early.wait("done").code == 0)
                try await createInstance(early, "waiting", module: "hello")
                try await createInstance(early, "running", module: "sleeper")
                _ = try await early.start("running")
                // The exit record reaches the disk from the runtime's event queue.
                let doneFile = state + "/instances/test/done.json"
                #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { (try? String(contentsOfFile: doneFile, encoding: .utf8))?.contains("\"exited\"") == true })
            }

            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, stateDirectory: state, arguments: ["--metrics-address", "127.0.0.1:\(port)"],
                logName: "second.log")
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 })
            func scrape() async throws -> String {
                let response = try get(port: port, "/metrics")
                #expect(response.status == 200)
                let metrics = body(of: response.text)
                let lint = try await run("/usr/bin/promtool", ["check", "metrics"], stdin: metrics)
                #expect(
                    lint.status == 0 && lint.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
                    "promtool: \(lint.output)")
                return metrics
            }
            let exited = "wasmlet_instances{state=\"exited\"}"
            let recovered = try await scrape()
            #expect(sampleValue(recovered, exited) == 3, "done, and waiting and running (daemon_restarted)")
            #expect(sampleValue(recovered, "wasmlet_instances{state=\"created\"}") == 0)
            #expect(sampleValue(recovered, "wasmlet_instances{state=\"running\"}") == 0)

            let client = try await daemon.client()
            #expect(try await client.inspect("waiting").exit.reason == .daemonRestarted)
            _ = try await client.delete("done")
            _ = try await client.delete("running")
            // An exited instance of this daemon's own beside the recovered one left.
            try await createInstance(client, "fresh", module: "hello")
            _ = try await client.start("fresh")
            #expect(try await client.wait("fresh").code == 0)
            #expect(sampleValue(try await scrape(), exited) == 2, "waiting (recovered) and fresh")
            _ = try await client.delete("waiting")
            #expect(sampleValue(try await scrape(), exited) == 1, "fresh")
            await client.close()
            withExtendedLifetime(daemon) {}
        }
    }
}
