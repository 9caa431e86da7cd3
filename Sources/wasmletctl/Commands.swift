import ArgumentParser
import Foundation
import WasmletAPI
import WasmletClient
import WasmletConventions

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List instances (all namespaces unless --namespace).", aliases: ["ls"])

    @OptionGroup var global: GlobalOptions

    @Option(name: [.customShort("n"), .long], help: "Only this namespace.")
    var namespace: String?

    @Option(
        name: [.customShort("l"), .customLong("selector")],
        help: ArgumentHelp("Only instances with this label (repeatable; or key=v,key2=v2).", valueName: "KEY=VALUE"))
    var selectors: [String] = []

    @Option(name: [.customShort("o"), .long], help: "Output format: table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        let labels = try parsed { () throws(ParseError) in try ArgumentParsing.parseLabels(selectors) }
        let instances = try await withDaemon(global) { client in
            try await client.list(namespace: namespace ?? "", labelSelector: labels)
        }
        switch output {
        case .table:
            writeStdout(InstanceFormatting.table(instances, now: Int64(Date().timeIntervalSince1970)))
        case .json:
            var bytes = InstanceFormatting.json(instances)
            bytes.append(0x0A)
            writeStdout(bytes: bytes)
        }
    }
}

struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Print an instance as JSON.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.customShort("n"), .long], help: "The instance's namespace.")
    var namespace: String = WasmletClient.defaultNamespace

    @Argument(help: "The instance id.")
    var id: String

    func run() async throws {
        let instance = try await withDaemon(global) { client in
            try await client.inspect(namespace: namespace, id: id)
        }
        writeStdout(InstanceFormatting.json(instance) + "\n")
    }
}

struct KillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kill", abstract: "Send a signal to a running instance (default TERM).")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.customShort("n"), .long], help: "The instance's namespace.")
    var namespace: String = WasmletClient.defaultNamespace

    @Option(name: [.customShort("s"), .long], help: "Signal name or number: TERM, SIGKILL, 9...")
    var signal: String = "TERM"

    @Argument(help: "The instance id.")
    var id: String

    func run() async throws {
        let number = try parsed { () throws(ParseError) in try ArgumentParsing.parseSignal(signal) }
        try await withDaemon(global) { client in
            try await client.kill(namespace: namespace, id: id, signal: number)
        }
    }
}

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a created or exited instance, or a service (stopped first).",
        discussion: "A running service (wasmletctl serve) is killed with TERM first; any other running instance must be killed first.",
        aliases: ["rm"])

    @OptionGroup var global: GlobalOptions

    @Option(name: [.customShort("n"), .long], help: "The instance's namespace.")
    var namespace: String = WasmletClient.defaultNamespace

    @Argument(help: "The instance id.")
    var id: String

    func run() async throws {
        try await withDaemon(global) { client in
            let instance = try await client.inspect(namespace: namespace, id: id)
            if instance.hasHTTPTrigger && instance.state == .running {
                try await client.kill(namespace: namespace, id: id, signal: UInt32(SIGTERM))
                _ = try await client.wait(namespace: namespace, id: id)
            }
            try await client.delete(namespace: namespace, id: id)
        }
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Print the daemon's counters.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.customShort("o"), .long], help: "Output format: table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        let stats = try await withDaemon(global) { client in try await client.stats() }
        switch output {
        case .table: writeStdout(InstanceFormatting.statsText(stats))
        case .json: writeStdout(InstanceFormatting.json(stats).rendered() + "\n")
        }
    }
}

struct VersionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print the client's and the daemon's versions.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        writeStdout("Client:\n  Version: \(WasmletClient.version)\n")
        let version = try await withDaemon(global) { client in try await client.version() }
        writeStdout(
            """
            Daemon:
              Version:  \(version.version)
              Revision: \(version.revision.isEmpty ? "-" : version.revision)
              Engine:   \(version.engine)
              API:      \(version.apiVersion)

            """)
    }
}
