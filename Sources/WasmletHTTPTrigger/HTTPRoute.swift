/// A route as WAGI's `modules.toml` writes it: `/api/...` matches `/api` and every path under
/// it; a route without the `/...` tail matches only itself. A service has one route today,
/// `/...` (every path); route tables are not done.
struct HTTPRoute: Sendable, Equatable {
    /// As written, e.g. `/api/...`; it is X_MATCHED_ROUTE.
    let pattern: String

    static let everything = HTTPRoute(pattern: "/...")

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
