import Foundation
import Glibc
import Testing
import WasmletTestSupport

extension DaemonEndToEndTests {
    /// toml++ (inside TOMLKit) aborts on some invalid TOML that `TOMLPreflight` does not know;
    /// these two abort it in its date and date-time scanning (a read of its 3.4 parser). The
    /// daemon parses a configuration file in a child first, so each is a refused file: at
    /// start, in `--check-config`, and on SIGHUP, where the running daemon must keep serving.
    @Suite struct ConfigurationParserCrash {
        static let crashingTexts = ["shutdown_grace = 2000-01-01T:00\n", "log_level = [2000-01-01 1]\n"]

        @Test(arguments: crashingTexts)
        func checkConfigAndStartRefuseTheFile(text: String) async throws {
            let directory = try TemporaryDirectory()
            let config = directory.path + "/wasmletd.toml"
            try text.write(toFile: config, atomically: true, encoding: .utf8)
            let check = try await ChildProcess.run(daemonPath, ["--check-config", "--config", config])
            #expect(check.termination == .exited(2), "\(check.output)")
            #expect(check.output.contains("configuration file \(config): the TOML parser (toml++, inside TOMLKit) crashed on this text (signal \(SIGABRT): Aborted)"), "\(check.output)")
            #expect(check.output.contains("Assertion"), "the child's assertion line is kept for a bug report: \(check.output)")

            let start = try await ChildProcess.run(
                daemonPath, ["--config", config, "--socket", directory.path + "/api.sock", "--state-dir", directory.path + "/state"])
            #expect(start.termination == .exited(2), "\(start.output)")
            #expect(start.output.contains("crashed on this text"), "\(start.output)")
        }

        /// A valid file passes the check; a file the parser refuses cleanly keeps its line and
        /// column (the daemon parses the text itself after the child).
        @Test func checkConfigPassesAValidFileAndLocatesAnError() async throws {
            let directory = try TemporaryDirectory()
            let config = directory.path + "/wasmletd.toml"
            try "log_level = \"debug\"\n[limits]\nmax_instances = 10\n".write(toFile: config, atomically: true, encoding: .utf8)
            let valid = try await ChildProcess.run(daemonPath, ["--check-config", "--config", config])
            #expect(valid.termination == .exited(0))
            #expect(valid.output == "wasmletd: configuration OK (file \(config) and flags)\n")

            try "log_level = \"debug\"\nshutdown_grace = 10s\n".write(toFile: config, atomically: true, encoding: .utf8)
            let invalid = try await ChildProcess.run(daemonPath, ["--check-config", "--config", config])
            #expect(invalid.termination == .exited(2))
            #expect(invalid.output.hasPrefix("wasmletd: configuration file \(config): line 2, column "), "\(invalid.output)")

            let badFlag = try await ChildProcess.run(daemonPath, ["--check-config", "--shutdown-grace", "soon"])
            #expect(badFlag.termination == .exited(2), "\(badFlag.output)")
        }

        /// SIGHUP with a file that crashes the parser: the reload is refused with the reason, and
        /// the daemon, its instances and its settings stay; a mended file then reloads.
        @Test func reloadSurvivesAParserCrash() async throws {
            let directory = try TemporaryDirectory()
            let config = directory.path + "/wasmletd.toml"
            try "log_level = \"info\"\n".write(toFile: config, atomically: true, encoding: .utf8)
            let daemon = try await DaemonProcess(directory: directory, arguments: ["--config", config])
            defer { daemon.killAndReap() }
            let client = try await daemon.client()
            _ = try await client.create("kept", module: example("hello"))

            for (round, text) in Self.crashingTexts.enumerated() {
                try text.write(toFile: config, atomically: true, encoding: .utf8)
                daemon.signal(SIGHUP)
                let refusals = round + 1
                #expect(
                    await eventually(timeout: .seconds(30), every: .milliseconds(20)) {
                        daemon.log.components(separatedBy: "reload failed, keeping the running configuration").count - 1 == refusals
                    }, "\(daemon.log)")
            }
            #expect(daemon.log.contains("crashed on this text (signal \(SIGABRT): Aborted)"), "\(daemon.log)")
            #expect(daemon.isRunning)
            #expect(try await client.inspect("kept").id == "kept")

            try "log_level = \"debug\"\n".write(toFile: config, atomically: true, encoding: .utf8)
            daemon.signal(SIGHUP)
            #expect(await eventually(timeout: .seconds(30), every: .milliseconds(20)) { daemon.log.contains("configuration reloaded") }, "\(daemon.log)")
            await client.close()
        }
    }
}
