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

    func run() async throws {
        let status = await Daemon(options: options).run()
        Foundation.exit(status)
    }
}
