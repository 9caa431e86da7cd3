import Foundation
import Glibc
import Testing
import WasmletTestSupport

extension DaemonEndToEndTests {
    @Suite struct Systemd {
        /// READY=1 after the socket listens, STATUS= with counts, RELOADING=1 + MONOTONIC_USEC
        /// then READY=1 on SIGHUP, WATCHDOG=1 with WATCHDOG_USEC, STOPPING=1 on SIGTERM.
        @Test func notifyProtocolWithARealReceiver() async throws {
            let directory = try TemporaryDirectory()
            let receiver = try DatagramReceiver(directory: directory, name: "notify.sock")  // NOTIFY_SOCKET
            let config = directory.path + "/wasmletd.toml"
            try "log_level = \"info\"\n".write(toFile: config, atomically: true, encoding: .utf8)
            let daemon = try await DaemonProcess(
                directory: directory,
                arguments: ["--config", config, "--status-interval", "200ms"],
                environment: ["NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": "400000"],
                waitForSocket: false)
            defer { daemon.killAndReap() }

            let ready = await receiver.waitFor { $0.split(separator: "\n").contains("READY=1") }
            let readyMessage = try #require(ready?.0, "no READY=1; log:\n\(daemon.log)")
            // The socket must already accept connections when READY=1 arrives.
            #expect((try? RawConnection(daemon.socketPath)) != nil)
            #expect(readyMessage.contains("STATUS=0 running, 0 created, 0 exited"))

            let watchdog = await receiver.waitFor(timeout: .seconds(10)) { $0 == "WATCHDOG=1" }
            #expect(watchdog != nil, "no WATCHDOG=1")

            let client = try await daemon.client()
            _ = try await client.create("counted", module: example("hello"))
            let status = await receiver.waitFor(timeout: .seconds(10)) { $0.hasPrefix("STATUS=") && $0.contains("1 created") }
            #expect(status?.0 == "STATUS=0 running, 1 created, 0 exited")

            // SIGHUP: RELOADING=1 with MONOTONIC_USEC in the same datagram, then READY=1. The
            // metrics address cannot change while running: the log must say it was ignored.
            try "log_level = \"debug\"\nmetrics_address = \"127.0.0.1:1\"\n".write(toFile: config, atomically: true, encoding: .utf8)
            daemon.signal(SIGHUP)
            let reloading = await receiver.waitFor(timeout: .seconds(10)) { $0.contains("RELOADING=1") }
            let reloadingMessage = try #require(reloading?.0)
            let monotonic = reloadingMessage.split(separator: "\n").first { $0.hasPrefix("MONOTONIC_USEC=") }
            #expect(monotonic.flatMap { UInt64($0.dropFirst("MONOTONIC_USEC=".count)) } ?? 0 > 0)
            let readyAgain = await receiver.waitFor(timeout: .seconds(10)) { $0.split(separator: "\n").contains("READY=1") }
            #expect(readyAgain != nil)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { daemon.log.contains("configuration reloaded") })
            #expect(daemon.log.contains("reload ignored changed settings, which take effect after a restart: metrics_address"), "\(daemon.log)")
            #expect(daemon.isRunning)

            daemon.signal(SIGTERM)
            let stopping = await receiver.waitFor(timeout: .seconds(10)) { $0.contains("STOPPING=1") }
            #expect(stopping != nil)
            #expect(await daemon.waitForExit()?.status == 0)
            await client.close()
        }

        @Test func watchdogStaysQuietWithoutWatchdogUsec() async throws {
            let directory = try TemporaryDirectory()
            let receiver = try DatagramReceiver(directory: directory, name: "notify.sock")  // NOTIFY_SOCKET
            let daemon = try await DaemonProcess(directory: directory, environment: ["NOTIFY_SOCKET": receiver.path])
            defer { daemon.killAndReap() }
            #expect(await receiver.waitFor { $0.contains("READY=1") } != nil)
            #expect(await receiver.waitFor(timeout: .seconds(1)) { $0 == "WATCHDOG=1" } == nil)
        }

        /// Through the real systemd-socket-activate: the daemon adopts the inherited "api"
        /// descriptor instead of binding, and serves a client on it.
        @Test(.enabled(if: access("/usr/bin/systemd-socket-activate", X_OK) == 0))
        func socketActivation() async throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/api.sock"
            let daemon = try await DaemonProcess(
                directory: directory, launcher: "/usr/bin/systemd-socket-activate",
                launcherArguments: ["-l", path, "--fdname=api"], waitForSocket: false)
            defer { daemon.killAndReap() }
            // systemd-socket-activate listens at once and starts the daemon on the first
            // connection; the client queues meanwhile.
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { FileManager.default.fileExists(atPath: path) })
            let client = try await RuntimeClient(socketPath: path)
            #expect(try await client.version().apiVersion == "wasmlet.v1")
            _ = try await client.create("activated", module: example("hello"))
            _ = try await client.start("activated")
            #expect(try await client.wait("activated").code == 0)
            #expect(daemon.log.contains("socket-activated"))
            await client.close()
        }
    }
}
