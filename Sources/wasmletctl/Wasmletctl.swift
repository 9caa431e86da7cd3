import ArgumentParser
import Foundation
import WasmletAPI
import WasmletClient
import WasmletConventions

#if canImport(Glibc)
import Glibc
#endif

/// `wasmletctl`: the admin CLI of `wasmletd`. Every subcommand connects to the daemon's socket
/// (`--socket`, else $WASMLET_SOCKET, else the daemon's default), makes its calls, and prints
/// failures as one line "wasmletctl: <message>" with exit code 1.
struct Wasmletctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wasmletctl",
        abstract: "Control wasmletd, the wasmlet node daemon.",
        discussion: """
            The daemon's socket is --socket PATH, else $WASMLET_SOCKET, else the daemon's default: \
            /run/wasmlet/wasmlet.sock as root; otherwise $XDG_RUNTIME_DIR/wasmlet/wasmlet.sock, \
            or ~/.wasmlet/wasmlet.sock without XDG_RUNTIME_DIR. Exit codes: 0 ok, 1 error; \
            `run` exits with the guest's code. --socket may be given before or after the \
            subcommand.
            """,
        version: WasmletClient.version,
        subcommands: [
            ListCommand.self, InspectCommand.self, RunCommand.self, ServeCommand.self, KillCommand.self,
            DeleteCommand.self, StatsCommand.self, VersionCommand.self, ImageCommand.self, ParseRoutesCommand.self,
        ])
}

/// Options every subcommand takes (`wasmletctl --socket PATH <subcommand>` also works: see main).
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
    writeStdout(bytes: Array(text.utf8))
}

/// Writes all of `bytes` to standard output straight from the array (a 10,000-instance JSON
/// list is megabytes: no copy into Data). Stops quietly if the reader went away.
func writeStdout(bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(1, buffer.baseAddress! + offset, buffer.count - offset)
            if written > 0 {
                offset += written
            } else if written < 0, errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}

/// Prints "wasmletctl: message" on stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("wasmletctl: \(message)\n".utf8))
}

/// Common shape of a subcommand: resolve the socket (--socket, $WASMLET_SOCKET, default), connect, call `body`; any failure becomes one line on stderr and exit code 1.
/// `ExitCode` thrown by `body` passes through (that is how `run` returns the guest's code).
func withDaemon<T>(
    _ options: GlobalOptions,
    _ body: (WasmletClient) async throws -> T
) async throws -> T {
    let path = WasmletSocketPath.resolve(explicit: options.socket)
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

/// The entry point: takes a `--socket PATH` (or `--socket=PATH`) written before the subcommand
/// name (ArgumentParser would reject it there, since the option belongs to the subcommands) and
/// passes it on through WASMLET_SOCKET, which a subcommand's own --socket still overrides.
@main
enum WasmletctlMain {
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        var index = 0
        while index < arguments.count, arguments[index].hasPrefix("-") {
            if arguments[index] == "--socket", index + 1 < arguments.count {
                setenv(WasmletSocketPath.environmentVariable, arguments[index + 1], 1)
                arguments.removeSubrange(index...(index + 1))
            } else if arguments[index].hasPrefix("--socket=") {
                setenv(WasmletSocketPath.environmentVariable, String(arguments[index].dropFirst("--socket=".count)), 1)
                arguments.remove(at: index)
            } else {
                index += 1
            }
        }
        await Wasmletctl.main(arguments)
    }
}

func parsed<T>(_ body: () throws(ParseError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        printError(error.message)
        throw ExitCode.failure
    }
}

/// `body`'s error, prefixed with the flag whose value it is about: "--timeout: ...".
func flag<T>(_ name: String, _ body: () throws(ParseError) -> T) throws(ParseError) -> T {
    do {
        return try body()
    } catch {
        throw ParseError("\(name): \(error.message)")
    }
}
