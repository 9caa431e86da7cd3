import ArgumentParser
import Foundation
import WasmletDaemon

/// `wasmletd`: the node daemon. Everything lives in WasmletDaemon; this only parses the flags
/// and hands over, so tests and other embedders drive the same code.
@main
struct Wasmletd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wasmletd",
        abstract: "The wasmlet node daemon: runs sandboxed WASI guests and serves wasmlet.v1.Runtime over ttrpc.",
        discussion: """
            Settings come from the flags, then the --config TOML file, then defaults. Without any \
            file, as root: socket /run/wasmlet/wasmlet.sock, state /var/lib/wasmlet; as another \
            user: $XDG_RUNTIME_DIR/wasmlet/wasmlet.sock (else ~/.wasmlet/wasmlet.sock) and \
            $XDG_STATE_HOME/wasmlet (else ~/.wasmlet/state). Under systemd the socket comes from \
            wasmletd.socket (descriptor name "api"). SIGHUP reloads the file; SIGTERM drains.
            """)

    @OptionGroup var options: DaemonOptions

    @Flag(
        name: .customLong("check-config"),
        help: ArgumentHelp(
            "Check the configuration (the --config file, then the flags) and exit: 0 if the daemon would start with it, 2 and the reason if not."))
    var checkConfig = false

    /// The child `ConfigurationParserChild` starts: the TOML parser's crashes stay in it.
    @Flag(name: .customLong("parse-config-stdin"), help: .hidden)
    var parseConfigStandardInput = false

    func run() async throws {
        if parseConfigStandardInput { Foundation.exit(ConfigurationCheck.parseStandardInput()) }
        if checkConfig { Foundation.exit(ConfigurationCheck.run(options: options)) }
        let status = await Daemon(options: options).run()
        Foundation.exit(status)
    }
}
