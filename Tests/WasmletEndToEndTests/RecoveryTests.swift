import Foundation
import Glibc
import Testing
import WasmletTTRPC
import WasmletTestSupport

extension DaemonEndToEndTests {
    @Suite struct Recovery {
        /// kill -9 with an instance running: the restarted daemon reports it exited with 137 /
        /// daemon_restarted, and the created and exited records survive.
        @Test func killNineThenRestartKeepsRecords() async throws {
            let directory = try TemporaryDirectory()
            let state = directory.path + "/state"
            let first = try await DaemonProcess(directory: directory, stateDirectory: state)
            let client = try await first.client()
            _ = try await client.create("runner", module: example("sleeper"), labels: ["keep": "yes"])
            _ = try await client.start("runner")
            _ = try await client.create("waiting", module: example("hello"))
            _ = try await client.create("done", module: example("hello"))
            _ = try await client.start("done")
            #expect(try await client.wait("done").code == 0)
            // The exit record reaches the disk from the runtime's event queue.
            let doneFile = state + "/instances/test/done.json"
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { (try? String(contentsOfFile: doneFile, encoding: .utf8))?.contains("\"exited\"") == true })
            await client.close()
            first.signal(SIGKILL)
            #expect(await first.waitForExit()?.reason == .uncaughtSignal)

            let second = try await DaemonProcess(directory: directory, stateDirectory: state, logName: "second.log")
            defer { second.killAndReap() }
            let again = try await second.client()
            let runner = try await again.inspect("runner")
            #expect(runner.state == .exited)
            #expect(runner.exit.code == 137)
            #expect(runner.exit.reason == .daemonRestarted)
            #expect(runner.labels == ["keep": "yes"])
            #expect(try await again.wait("runner").reason == .daemonRestarted)
            let waiting = try await again.inspect("waiting")
            #expect(waiting.state == .exited)
            #expect(waiting.exit.reason == .daemonRestarted)
            let done = try await again.inspect("done")
            #expect(done.exit.reason == .exited)
            #expect(done.exit.code == 0)
            #expect(try await again.list(namespace: "test").map(\.id) == ["done", "runner", "waiting"])
            #expect(try await again.list(labels: ["keep": "yes"]).map(\.id) == ["runner"])
            #expect(try await again.stats().exited == 3)
            #expect(second.log.contains("daemon_restarted"))

            // Recovered instances: Kill is refused, Create of the same id is a duplicate,
            // Delete works and sticks across another restart.
            #expect(await statusCode { try await again.kill("runner") }?.0 == .failedPrecondition)
            #expect(await statusCode { _ = try await again.create("runner", module: example("hello")) }?.0 == .alreadyExists)
            let deleted = try await again.delete("runner")
            #expect(deleted.exit.code == 137)
            #expect(await statusCode { _ = try await again.inspect("runner") }?.0 == .notFound)
            await again.close()
            await second.stop()

            let third = try await DaemonProcess(directory: directory, stateDirectory: state, logName: "third.log")
            defer { third.killAndReap() }
            let last = try await third.client()
            #expect(try await last.list().map(\.id) == ["done", "waiting"])
            await last.close()
        }

        /// SIGTERM: new work is refused UNAVAILABLE, a running sleeper is killed after the
        /// grace, its exit is on disk, and the daemon exits 0.
        @Test func sigtermDrainsKillsAfterGraceAndExitsZero() async throws {
            let directory = try TemporaryDirectory()
            let state = directory.path + "/state"
            let daemon = try await DaemonProcess(directory: directory, stateDirectory: state, arguments: ["--shutdown-grace", "4s"])
            let client = try await daemon.client()
            _ = try await client.create("sleepy", module: example("sleeper"))
            _ = try await client.start("sleepy")
            // A short sleeper finishes within the grace on its own (0.2 s of a 4 s grace: room
            // for a machine busy with parallel test suites).
            _ = try await client.create("short", module: example("sleeper"), args: ["sleeper", "0.2"])
            _ = try await client.start("short")
            let began = ContinuousClock.now
            daemon.signal(SIGTERM)
            #expect(await eventually(timeout: .seconds(5), every: .milliseconds(50)) { daemon.log.contains("draining") })
            let refused = await statusCode { _ = try await client.create("late", module: example("hello")) }
            #expect(refused?.0 == .unavailable)
            #expect(refused?.1 == "daemon is shutting down")
            #expect(await statusCode { _ = try await client.start("sleepy") }?.0 == .unavailable)

            let exit = await daemon.waitForExit(timeout: .seconds(30))
            #expect(exit?.status == 0)
            #expect(exit?.reason == .exit)
            #expect(ContinuousClock.now - began >= .seconds(4))

            // The records on disk: killed after the grace, and the short one exited by itself.
            let restarted = try await DaemonProcess(directory: directory, stateDirectory: state, logName: "second.log")
            defer { restarted.killAndReap() }
            let again = try await restarted.client()
            let sleepy = try await again.inspect("sleepy")
            #expect(sleepy.exit.reason == .killed)
            #expect(sleepy.exit.code == 137)
            let short = try await again.inspect("short")
            #expect(short.exit.reason == .exited)
            #expect(short.exit.code == 0)
            await again.close()
        }
    }
}
