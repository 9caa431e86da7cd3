import ArgumentParser
import Foundation
import WasmletAPI
import WasmletClient
import WasmletConventions

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve HTTP from a module: wasmletd runs a fresh instance of it for every request (WAGI).",
        discussion: """
            wasmletd listens on each --listen address itself and runs MODULE once per request under \
            WAGI's CGI contract: the request's metadata in the environment (REQUEST_METHOD, \
            PATH_INFO, QUERY_STRING, HTTP_<HEADER>, ...), its body on stdin, and the answer read \
            from stdout as CGI headers, a blank line and the body. --fuel, --memory and --timeout \
            apply to each request (--timeout defaults to 30s there). This command returns once \
            the service listens and prints each bound address on stdout; the service runs until \
            `wasmletctl kill ID` or `wasmletctl delete ID`. `wasmletctl inspect ID` shows its \
            request counts. With --routes, a WAGI modules.toml route table picks the module for \
            each request (first match wins; SCRIPT_NAME and X_MATCHED_ROUTE name the route).
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var guest: GuestOptions

    @Option(name: .customLong("max-concurrency"), help: "Requests running at once (default twice the node's cores, 2 to 64); more wait in the queue.")
    var maxConcurrency: UInt32?

    @Option(name: .customLong("queue-length"), help: "Requests that may wait for a slot (default 1024; 0: none); past it 503.")
    var queueLength: UInt32?

    @Option(name: .customLong("queue-timeout"), help: ArgumentHelp("Longest wait in the queue before 503 (default 5s).", valueName: "duration"))
    var queueTimeout: String?

    @Option(name: .customLong("max-body"), help: ArgumentHelp("Largest request body (default 64M); 413 past it.", valueName: "size"))
    var maxBody: String?

    @Option(name: .customLong("max-headers"), help: ArgumentHelp("Largest request line and headers (default 16K); 431 past it.", valueName: "size"))
    var maxHeaders: String?

    @Option(name: .customLong("max-response"), help: ArgumentHelp("Largest guest output (default 64M); 502 past it.", valueName: "size"))
    var maxResponse: String?

    @Option(
        name: .customLong("read-timeout"),
        help: ArgumentHelp("Time a connection has to send each whole request (default 10s); then it is closed.", valueName: "duration"))
    var readTimeout: String?

    @Option(
        name: .customLong("routes"),
        help: ArgumentHelp(
            "A route table in WAGI's modules.toml form ([[module]] route = \"/api/...\", module = \"api.wasm\"): its routes are tried in order, and MODULE answers every path none of them matches.",
            valueName: "file"))
    var routes: String?

    func run() async throws {
        var request = Wasmlet_V1_CreateRequest()
        try parsed { () throws(ParseError) in
            try guest.fill(&request, idPrefix: "svc-", currentDirectory: FileManager.default.currentDirectoryPath)
            guard !request.listeners.isEmpty else { throw ParseError("serve needs at least one --listen [ADDR:]PORT") }
            var trigger = Wasmlet_V1_HTTPTrigger()
            if let maxConcurrency {
                guard maxConcurrency > 0 else { throw ParseError("--max-concurrency must be at least 1") }
                trigger.maxConcurrency = maxConcurrency
            }
            if let queueLength { trigger.queueLength = queueLength }
            func milliseconds(_ name: String, _ text: String?) throws(ParseError) -> UInt64 {
                guard let text else { return 0 }
                return try flag(name) { () throws(ParseError) in
                    let value = try DurationSyntax.parseMilliseconds(text)
                    guard value > 0 else { throw ParseError("must be more than 0") }
                    return value
                }
            }
            func bytes(_ name: String, _ text: String?) throws(ParseError) -> UInt64 {
                guard let text else { return 0 }
                return try flag(name) { () throws(ParseError) in try ByteSize.parse(text) }
            }
            trigger.queueTimeoutMs = try milliseconds("--queue-timeout", queueTimeout)
            trigger.requestReadTimeoutMs = try milliseconds("--read-timeout", readTimeout)
            trigger.maxBodyBytes = try bytes("--max-body", maxBody)
            trigger.maxResponseBytes = try bytes("--max-response", maxResponse)
            let headers = try bytes("--max-headers", maxHeaders)
            guard headers <= UInt64(UInt32.max) else { throw ParseError("--max-headers: at most 4G") }
            trigger.maxHeaderBytes = UInt32(headers)
            if let routes {
                let table = try flag("--routes") { () throws(ParseError) in
                    try WAGIModulesFile.read(path: routes, currentDirectory: FileManager.default.currentDirectoryPath, inChild: true)
                }
                trigger.routes = table.routes.map { row in .with { $0.route = row.route; $0.path = row.module } }
                // MODULE last, for every path the table does not match.
                trigger.routes.append(.with {
                    $0.route = "/..."
                    switch request.module {
                    case .digest(let digest)?: $0.digest = digest
                    default: $0.path = request.path
                    }
                })
            }
            request.httpTrigger = trigger
        }
        try await withDaemon(global) { client in
            let created = try await client.create(request)
            do {
                try await client.start(namespace: request.namespace, id: request.id)
            } catch {
                _ = try? await client.delete(namespace: request.namespace, id: request.id)
                throw error
            }
            printError("\(request.namespace)/\(request.id) is serving; stop it with: wasmletctl delete \(request.id)")
            for listener in created.listeners { print("http://\(listener.boundAddress)/") }
        }
    }
}
