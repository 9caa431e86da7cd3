import NIOHTTP1
import WasmletRuntime

/// The HTTP trigger's handling of requests and of guests' CGI output on arbitrary input, for the
/// fuzz target `fuzz-http-request` (scripts/fuzz.sh). Package-visible only: nothing in the
/// product calls it.
package enum HTTPTriggerFuzzEntryPoints {
    private static let routes = [
        HTTPRoute(pattern: "/api/..."), HTTPRoute(pattern: "/exact"), HTTPRoute(pattern: "/..."),
    ]

    /// What a request decoded by NIO's HTTP/1 parser becomes for its guest, as the connection
    /// handler builds it: the CGI request, its route, argv and environment.
    package static func describe(_ head: HTTPRequestHead, bodyLength: Int) {
        var request = HTTPConnectionHandler.request(head, bodyLength: bodyLength, remoteAddress: "127.0.0.1", localPort: 8080)
        guard let route = HTTPRoute.first(in: routes, matching: request.path) else { return }
        request.route = route
        _ = request.arguments
        let environment = request.environment(service: ["SERVICE": "fuzz"], serverSoftware: "wasmlet-fuzz")
        precondition(environment["SCRIPT_NAME"] == route.scriptName, "SCRIPT_NAME is not the matched route's")
    }

    /// A guest's stdout read as a CGI response, and the HTTP answer made of it.
    package static func answer(cgiOutput: [UInt8]) {
        guard let response = try? CGIResponse.parse(cgiOutput) else { return }
        _ = HTTPAnswer(response)
    }
}
