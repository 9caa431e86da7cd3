import ArgumentParser
import Foundation
import WasmletAPI
import WasmletClient

/// `wasmletctl`: the admin CLI of `wasmletd`. Every subcommand connects to the daemon's socket
/// (`--socket`, else $WASMLET_SOCKET, else the daemon's default), makes its calls, and prints
/// failures as one line "wasmletctl: <message>" with exit code 1.
@main
struct Wasmletctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wasmletctl",
        abstract: "Control wasmletd, the wasmlet node daemon.",
        discussion: """
            The daemon's socket is --socket PATH, else $WASMLET_SOCKET, else the daemon's default: \
            /run/wasmlet/wasmlet.sock as root; otherwise $XDG_RUNTIME_DIR/wasmlet/wasmlet.sock, \
            or ~/.wasmlet/wasmlet.sock without XDG_RUNTIME_DIR. Exit codes: 0 ok, 1 error; \
            `run` exits with the guest's code.
            """,
        version: WasmletClient.version,
        subcommands: [
            ListCommand.self, InspectCommand.self, RunCommand.self, KillCommand.self,
            DeleteCommand.self, StatsCommand.self, VersionCommand.self,
        ])

    @OptionGroup var global: GlobalOptions
}

/// Options every subcommand takes (and `wasmletctl --socket PATH <subcommand>` also works).
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .customLong("socket"),
        help: ArgumentHelp("The daemon's socket (default: $WASMLET_SOCKET or the daemon's default).", valueName: "PATH"))
    var socket: String?
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table
    case json
}

/// Writes `text` to stdout unbuffered-in-one-go.
func writeStdout(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// Prints "wasmletctl: message" on stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("wasmletctl: \(message)\n".utf8))
}

/// Common shape of a subcommand: resolve the socket (the subcommand's --socket, then the root
/// command's), connect, call `body`; any failure becomes one line on stderr and exit code 1.
/// `ExitCode` thrown by `body` passes through (that is how `run` returns the guest's code).
func withDaemon<T>(
    _ options: GlobalOptions,
    _ body: (WasmletClient) async throws -> T
) async throws -> T {
    let path = WasmletSocketPath.resolve(explicit: options.socket ?? rootSocketOption())
    do {
        let client = try await WasmletClient.connect(socketPath: path)
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    } catch let error as ExitCode {
        throw error
    } catch let error as WasmletClientError {
        printError(error.description)
        throw ExitCode.failure
    } catch let error as ParseError {
        printError(error.message)
        throw ExitCode.failure
    } catch let error as CLIError {
        printError(error.message)
        throw ExitCode.failure
    } catch {
        printError(String(describing: error))
        throw ExitCode.failure
    }
}

/// A one-line failure found by wasmletctl itself.
struct CLIError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// `--socket` given before the subcommand name (`wasmletctl --socket P list`). ArgumentParser
/// hands it to the subcommand's own option group in that case; this looks at the raw arguments
/// as a fallback so both spellings work whatever the parser does.
func rootSocketOption() -> String? {
    let arguments = Array(CommandLine.arguments.dropFirst())
    for (index, argument) in arguments.enumerated() {
        if argument == "--" { break }
        if argument == "--socket", index + 1 < arguments.count { return arguments[index + 1] }
        if argument.hasPrefix("--socket=") { return String(argument.dropFirst("--socket=".count)) }
        // Stop at the subcommand: options after it belong to it (and to a guest, for run).
        if !argument.hasPrefix("-") { break }
    }
    return nil
}

func parsed<T>(_ body: () throws(ParseError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        printError(error.message)
        throw ExitCode.failure
    }
}
