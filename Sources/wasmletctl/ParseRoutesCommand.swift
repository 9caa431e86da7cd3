import ArgumentParser
import WasmletClient

/// The child `serve --routes` starts (`WAGIModulesFile.read(inChild:)`): it parses the route
/// table on its stdin, so that a crash of the TOML parser ends this child, not the command.
struct ParseRoutesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: WAGIModulesFile.childCommand, abstract: "Parse a route table from stdin (internal).",
        shouldDisplay: false)

    @Argument(help: "The directory module paths are relative to.") var directory: String
    @Argument(help: "The file's path, for messages.") var path: String

    func run() throws {
        throw ExitCode(WAGIModulesFile.parseStandardInput(directory: directory, path: path))
    }
}
