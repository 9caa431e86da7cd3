import WasmletRuntime

/// A route as WAGI's `modules.toml` writes it: `/api/...` matches `/api` and every path under
/// it; a route without the `/...` tail matches only itself. Its module is one of the service's
/// route table (`HTTPRouteSpec`), or the instance's own for the default route `/...`.
struct HTTPRoute: Sendable, Equatable {
    /// As written, e.g. `/api/...`; it is X_MATCHED_ROUTE.
    let pattern: String
    /// The module that answers it; nil: the instance's own.
    var moduleDigest: String? = nil

    static let everything = HTTPRoute(pattern: "/...")

    /// The service's routes in the order they are tried.
    static func table(_ trigger: HTTPTriggerSpec) -> [HTTPRoute] {
        trigger.routes.isEmpty ? [.everything] : trigger.routes.map { HTTPRoute(pattern: $0.route, moduleDigest: $0.moduleDigest) }
    }

    /// The first route of `table` that matches `path`, as WAGI picks one.
    static func first(in table: [HTTPRoute], matching path: Substring) -> HTTPRoute? {
        table.first { $0.matches(path) }
    }

    var isPrefix: Bool { pattern.hasSuffix("/...") }

    /// SCRIPT_NAME: the route without its `/...` tail ("" for `/...`).
    var scriptName: String { isPrefix ? String(pattern.dropLast(4)) : pattern }

    func matches(_ path: Substring) -> Bool {
        guard isPrefix else { return path == pattern }
        let base = scriptName
        return base.isEmpty || path == base || path.hasPrefix(base + "/")
    }

    /// The raw (not decoded) part of a matching path after SCRIPT_NAME.
    func pathInfo(of path: Substring) -> Substring {
        isPrefix ? path.dropFirst(scriptName.count) : ""
    }
}
