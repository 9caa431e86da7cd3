import ArgumentParser
import Foundation
import WasmletAPI
import WasmletClient
import WasmletConventions

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What `run` and `serve` both say about the instance they create: its module, id, labels,
/// environment, directories, listeners and limits. One parser for each, so both mean the same.
struct GuestOptions: ParsableArguments {
    @Option(name: .customLong("env"), help: ArgumentHelp("Set a guest environment variable (repeatable).", valueName: "KEY=VALUE"))
    var environment: [String] = []

    @Option(name: .customLong("dir"), help: ArgumentHelp("Preopen a host directory: HOST[:GUEST][:ro] (repeatable).", valueName: "MAPPING"))
    var directories: [String] = []

    @Option(
        name: .customLong("listen"),
        help: ArgumentHelp(
            "Pre-open a TCP listener: [ADDR:]PORT, ADDR an IP (default 127.0.0.1, IPv6 as [::1]), PORT 0 for a free one (repeatable). The bound addresses are printed on stderr.",
            valueName: "[ADDR:]PORT"))
    var listen: [String] = []

    @Option(name: .customLong("max-connections"), help: "Most connections open at once (default: the daemon's, 1024).")
    var maxConnections: UInt32?

    @Option(help: "Fuel budget (about one unit per wasm operator); default unlimited.")
    var fuel: UInt64?

    @Option(help: ArgumentHelp(
        "Memory cap: bytes, or with K, M, G (powers of 1024; also KiB, MiB, GiB), e.g. 16M (default: the daemon's).",
        valueName: "size"))
    var memory: String?

    @Option(help: ArgumentHelp(
        "Wall-clock limit, with a unit: 500ms, 30s, 5m, 1h30m (a bare number is refused; default none).",
        valueName: "duration"))
    var timeout: String?

    @Option(help: "Instance id (default: a prefix and a random number).")
    var id: String?

    @Option(name: [.customShort("n"), .long], help: "Namespace.")
    var namespace: String = WasmletClient.defaultNamespace

    @Option(name: [.customShort("l"), .customLong("label")], help: ArgumentHelp("Label the instance (repeatable).", valueName: "KEY=VALUE"))
    var labels: [String] = []

    @Argument(help: "The .wasm module (path or sha256:<hex> digest).")
    var module: String

    /// Fills in everything but stdio; args is [module name].
    func fill(_ request: inout Wasmlet_V1_CreateRequest, idPrefix: String, currentDirectory: String) throws(ParseError) {
        request.namespace = namespace
        request.id = id ?? idPrefix + String(UInt32.random(in: .min ... .max), radix: 16)
        request.labels = try ArgumentParsing.parseLabels(labels)
        try flag("--env") { () throws(ParseError) in try EnvironmentSyntax.validate(environment) }
        request.env = environment
        request.preopens = try directories.map { text throws(ParseError) in
            let mapping = try flag("--dir") { () throws(ParseError) in
                try PreopenSyntax.parse(text, currentDirectory: currentDirectory)
            }
            return Wasmlet_V1_Preopen.with {
                $0.hostPath = mapping.hostPath
                $0.guestPath = mapping.guestPath
                $0.readonly = mapping.readOnly
            }
        }
        var limits = Wasmlet_V1_Limits()
        if let fuel { limits.fuel = fuel }
        if let memory { limits.memoryBytes = try flag("--memory") { () throws(ParseError) in try ByteSize.parse(memory) } }
        if let timeout {
            limits.timeoutMs = try flag("--timeout") { () throws(ParseError) in
                let milliseconds = try DurationSyntax.parseMilliseconds(timeout)
                guard milliseconds > 0 else { throw ParseError("must be more than 0 (leave it out for none)") }
                return milliseconds
            }
        }
        if let maxConnections {
            guard maxConnections > 0 else { throw ParseError("--max-connections must be at least 1") }
            limits.maxConnections = maxConnections
        }
        request.limits = limits
        request.listeners = try listen.map { value throws(ParseError) in
            try ArgumentParsing.parseListener(value)
        }
        let name: String
        if module.hasPrefix("sha256:") {
            request.digest = module
            name = module
        } else {
            let path = PreopenSyntax.absolutePath(module, currentDirectory: currentDirectory)
            guard access(path, R_OK) == 0 else {
                throw ParseError("cannot read module \(path): \(String(cString: strerror(errno)))")
            }
            request.path = path
            name = (path as NSString).lastPathComponent
        }
        request.args = [name]
    }
}
