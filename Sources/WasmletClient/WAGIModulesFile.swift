import Foundation
import TOMLKit
import WasmletConventions
import WasmletParserChild

/// A route table in WAGI's `modules.toml` form, for `wasmletctl serve --routes`:
///
/// ```toml
/// [[module]]
/// route = "/api/..."        # /api and every path under it; "/..." is every path
/// module = "api.wasm"       # a file, relative to this file's directory
///
/// [[module]]
/// route = "/health"         # this path only
/// module = "/srv/health.wasm"
/// ```
///
/// Only `route` and `module` are read. WAGI's other keys (`entrypoint`, `volumes`,
/// `environment`, `allowed_hosts`, `http_headers`, `argv`) and module references that are not
/// files (`bindle:`, `oci:`, URLs) are refused by name, not ignored: wasmletctl's own flags
/// (`--env`, `--dir`) set the environment and directories of every route. The route syntax is
/// checked by the daemon, which owns it.
public struct WAGIModulesFile: Sendable, Equatable {
    public struct Route: Sendable, Equatable {
        public var route: String
        /// Absolute path of the module file.
        public var module: String

        public init(route: String, module: String) {
            self.route = route
            self.module = module
        }
    }

    public var routes: [Route]

    /// The hidden wasmletctl subcommand that parses a route table from stdin in a child
    /// (`TOMLParserChild`): `wasmletctl parse-routes-stdin DIRECTORY PATH`.
    public static let childCommand = "parse-routes-stdin"

    /// Reads and parses the file. With `inChild` (wasmletctl), the text is parsed in a child
    /// `wasmletctl parse-routes-stdin` first, so that a toml++ abort is an error message here.
    public static func read(path: String, currentDirectory: String, inChild: Bool = false) throws(ParseError) -> WAGIModulesFile {
        let absolute = PreopenSyntax.absolutePath(path, currentDirectory: currentDirectory)
        let directory = (absolute as NSString).deletingLastPathComponent
        let text: String
        do {
            text = try String(contentsOfFile: absolute, encoding: .utf8)
        } catch {
            throw ParseError("cannot read \(absolute): \((error as NSError).localizedDescription)")
        }
        if inChild {
            let verdict: TOMLParserChild.Verdict
            do {
                verdict = try TOMLParserChild(arguments: [childCommand, directory, absolute]).run(on: text)
            } catch {
                throw ParseError("\(absolute): \(error.description)")
            }
            guard verdict == .finished else { throw ParseError("\(absolute): \(TOMLParserChild.reason(verdict))") }
        }
        return try parse(text, directory: directory, path: absolute)
    }

    /// The child's side: parse stdin as the route table at `path`; 0 if it is valid, 1 if not.
    public static func parseStandardInput(directory: String, path: String) -> Int32 {
        do {
            _ = try parse(TOMLParserChild.readStandardInput(), directory: directory, path: path)
            return 0
        } catch {
            return 1
        }
    }

    static let unsupported: Set<String> = ["entrypoint", "volumes", "environment", "allowed_hosts", "http_headers", "argv", "bindle_server"]

    public static func parse(_ text: String, directory: String, path: String) throws(ParseError) -> WAGIModulesFile {
        do {
            try TOMLPreflight.check(text)
        } catch {
            throw ParseError("\(path): \(error.message)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ParseError("\(path): line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ParseError("\(path): \(error)")
        }
        for key in table.keys where key != "module" {
            throw ParseError("\(path): unknown key \(key) (a route table has only [[module]] entries)")
        }
        guard let entries = table["module"]?.array else {
            throw ParseError("\(path): no [[module]] entries (each has a route and a module)")
        }
        var routes: [Route] = []
        for (index, entry) in entries.enumerated() {
            let place = "\(path): [[module]] number \(index + 1)"
            guard let entry = entry.table else { throw ParseError("\(place): expected a table") }
            for key in entry.keys where key != "route" && key != "module" {
                throw ParseError(
                    Self.unsupported.contains(key)
                        ? "\(place): \(key) is not supported by wasmlet (use wasmletctl serve's flags, which apply to every route)"
                        : "\(place): unknown key \(key)")
            }
            guard let route = entry["route"]?.string else { throw ParseError("\(place): route (a string such as \"/...\") is required") }
            guard let module = entry["module"]?.string, !module.isEmpty else {
                throw ParseError("\(place): module (the path of a .wasm file) is required")
            }
            if let colon = module.firstIndex(of: ":"), !module[..<colon].contains("/") {
                throw ParseError("\(place): module \"\(module)\" is not a file path (\(module[..<colon]): references are not supported)")
            }
            let file = PreopenSyntax.absolutePath(module, currentDirectory: directory)
            guard access(file, R_OK) == 0 else {
                throw ParseError("\(place): cannot read module \(file): \(String(cString: strerror(errno)))")
            }
            routes.append(Route(route: route, module: file))
        }
        return WAGIModulesFile(routes: routes)
    }
}
