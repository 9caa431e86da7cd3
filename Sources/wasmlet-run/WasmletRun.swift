import ArgumentParser
import Foundation
import WasmletClient
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

    @Option(help: "Memory cap in bytes; suffixes K, M, G accepted.")
    var memory: String?

    @Option(help: "Wall-clock deadline in milliseconds.")
    var timeout: UInt64?

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
        let limits = InstanceLimits(memoryBytes: try memory.map(Self.parseBytes), fuel: fuel, timeoutMilliseconds: timeout)
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
            environment: try Self.parseEnvironment(environment), preopens: try directories.map(Self.parsePreopen),
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

    static func parseBytes(_ text: String) throws -> UInt64 {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        var digits = text.uppercased()
        var scale: UInt64 = 1
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        if let last = digits.last, let unit = units[last] {
            scale = unit
            digits.removeLast()
        }
        guard let value = UInt64(digits), value > 0 else { throw ValidationError("invalid size \"\(text)\"; use e.g. 65536, 64K, 16M") }
        return value * scale
    }

    static func parseEnvironment(_ pairs: [String]) throws -> [String: String] {
        var environment: [String: String] = [:]
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ValidationError("invalid --env \"\(pair)\"; expected KEY=VALUE")
            }
            environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        return environment
    }

    static func parsePreopen(_ mapping: String) throws -> PreopenSpec {
        var parts = mapping.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var readOnly = false
        if parts.count > 1, parts.last == "ro" || parts.last == "rw" {
            readOnly = parts.removeLast() == "ro"
        }
        guard (1...2).contains(parts.count), !parts[0].isEmpty else {
            throw ValidationError("invalid --dir \"\(mapping)\"; expected HOST[:GUEST][:ro]")
        }
        let host = URL(fileURLWithPath: parts[0]).standardizedFileURL.path
        return PreopenSpec(guestPath: parts.count == 2 ? parts[1] : parts[0], hostPath: host, readOnly: readOnly)
    }
}
