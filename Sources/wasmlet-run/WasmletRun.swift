import ArgumentParser
import Foundation
import WasmletConventions
import WasmletRuntime

/// Runs one WASI module in-process on the wasmlet runtime, the way wasmletd will host it: same
/// limits, same sandbox, same exit codes. Useful to try a module on a node before deploying it.
@main
struct WasmletRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wasmlet-run",
        abstract: "Run a WASI preview1 module on the wasmlet runtime, in this process.",
        discussion: """
            The guest's stdout and stderr are this process's; the exit code is the guest's \
            (128+N when killed by signal N, 137 on a deadline, 134 on a trap or when fuel runs \
            out, 126 when it could not start).
            """)

    @Option(name: .customLong("env"), help: ArgumentHelp("Set a guest environment variable.", valueName: "KEY=VALUE"))
    var environment: [String] = []

    @Option(name: .customLong("dir"), help: ArgumentHelp("Preopen a host directory: HOST[:GUEST][:ro].", valueName: "MAPPING"))
    var directories: [String] = []

    @Option(help: "Fuel budget (about one unit per wasm operator).")
    var fuel: UInt64?

    @Option(help: ArgumentHelp(
        "Memory cap: bytes, or with K, M, G (powers of 1024; also KiB, MiB, GiB), e.g. 16M.", valueName: "size"))
    var memory: String?

    @Option(help: ArgumentHelp(
        "Wall-clock deadline, with a unit: 500ms, 30s, 5m, 1h30m (a bare number is refused).", valueName: "duration"))
    var timeout: String?

    @Option(
        name: .customLong("listen"),
        help: ArgumentHelp(
            "Pre-open a TCP listener: [ADDR:]PORT (ADDR default 127.0.0.1, PORT 0 for a free one; repeatable). Bound addresses are printed on stderr.",
            valueName: "[ADDR:]PORT"))
    var listen: [String] = []

    @Flag(name: .shortAndLong, help: "Print the exit record as JSON on stderr when the guest ends.")
    var verbose = false

    @Argument(help: "The .wasm module.")
    var module: String

    @Argument(parsing: .captureForPassthrough, help: "Arguments passed to the guest.")
    var arguments: [String] = []

    func run() async throws {
        let limits = InstanceLimits(
            memoryBytes: try memory.map { try Self.value("--memory", ByteSize.parse($0)) }, fuel: fuel,
            timeoutMilliseconds: try timeout.map { try Self.value("--timeout", Self.positiveMilliseconds($0)) })
        let currentDirectory = FileManager.default.currentDirectoryPath
        let listeners = try listen.map { value -> ListenerSpec in
            do {
                let parsed = try ListenAddress.parse(value)
                return ListenerSpec(address: parsed.address, port: parsed.port)
            } catch let error as ListenAddress.ParseError {
                throw ValidationError("--listen: \(error.message)")
            }
        }
        let runtime = try WasmletRuntime()
        let loaded: LoadedModule
        do {
            loaded = try runtime.loadModule(path: module)
        } catch let error as RuntimeError {
            throw ValidationError("\(module): \(error.message)")
        }
        let spec = InstanceSpec(
            key: InstanceKey(namespace: "wasmlet-run", id: "main"), moduleDigest: loaded.digest,
            args: [URL(fileURLWithPath: module).lastPathComponent] + arguments,
            environment: try Self.value("--env", EnvironmentSyntax.table(environment)),
            preopens: try directories.map { text in
                let mapping = try Self.value("--dir", PreopenSyntax.parse(text, currentDirectory: currentDirectory))
                return PreopenSpec(guestPath: mapping.guestPath, hostPath: mapping.hostPath, readOnly: mapping.readOnly)
            },
            stdio: StdioSpec(stdin: "/proc/self/fd/0", stdout: "/proc/self/fd/1", stderr: "/proc/self/fd/2"), limits: limits,
            listeners: listeners)
        // Ctrl-C and SIGTERM kill the guest the way `wasmletctl kill` would.
        let signals = [SIGINT, SIGTERM].map { number -> DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { try? runtime.kill(spec.key, signal: number) }
            source.resume()
            return source
        }
        let created: InstanceSnapshot
        do {
            created = try runtime.create(spec)
        } catch let error as RuntimeError {
            FileHandle.standardError.write(Data("wasmlet-run: \(error.message)\n".utf8))
            throw ExitCode(126)
        }
        for listener in created.listeners {
            FileHandle.standardError.write(Data("wasmlet-run: listening on \(listener.boundAddress) (guest fd \(listener.guestFd))\n".utf8))
        }
        try runtime.start(spec.key)
        let exit = try await runtime.wait(spec.key)
        _ = try? runtime.delete(spec.key)
        withExtendedLifetime(signals) {}
        if verbose || exit.reason == .failedToStart {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            if verbose, let json = try? encoder.encode(exit) {
                FileHandle.standardError.write(json + Data("\n".utf8))
            } else {
                FileHandle.standardError.write(Data("wasmlet-run: \(exit.message)\n".utf8))
            }
        }
        throw ExitCode(exit.code)
    }

    /// `parse()`'s value, or its error as this command's usage error for `flag`.
    static func value<T>(_ flag: String, _ parse: @autoclosure () throws(ParseError) -> T) throws -> T {
        do {
            return try parse()
        } catch {
            throw ValidationError("\(flag): \(error.message)")
        }
    }

    static func positiveMilliseconds(_ text: String) throws(ParseError) -> UInt64 {
        let milliseconds = try DurationSyntax.parseMilliseconds(text)
        guard milliseconds > 0 else { throw ParseError("must be more than 0 (leave it out for none)") }
        return milliseconds
    }
}
