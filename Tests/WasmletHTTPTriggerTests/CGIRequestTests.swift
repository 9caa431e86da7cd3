import Testing

@testable import WasmletHTTPTrigger

@Suite struct CGIRequestTests {
    static let request = CGIRequest(
        method: "POST", target: "/api/items/a%20b?x=1&y=%41&&z", protocolVersion: "HTTP/1.1",
        headers: [
            ("Host", "example.test:8080"), ("Content-Type", "text/csv"), ("X-Trace-Id", "t1"), ("X-Trace-Id", "t2"),
            ("Authorization", "Bearer secret"), ("Connection", "keep-alive"), ("Accept-Encoding", "gzip"),
        ],
        bodyLength: 12, remoteAddress: "192.0.2.7", localPort: 9000, route: HTTPRoute(pattern: "/api/..."))

    @Test func everyWAGIVariable() {
        let environment = Self.request.environment(service: ["GREETING": "hi", "PATH_INFO": "overridden"], serverSoftware: "wasmlet/test")
        let expected: [String: String] = [
            "AUTH_TYPE": "", "CONTENT_LENGTH": "12", "CONTENT_TYPE": "text/csv", "GATEWAY_INTERFACE": "CGI/1.1",
            "PATH_INFO": "/items/a b", "PATH_TRANSLATED": "/items/a b", "QUERY_STRING": "x=1&y=%41&&z",
            "REMOTE_ADDR": "192.0.2.7", "REMOTE_HOST": "192.0.2.7", "REMOTE_USER": "", "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "/api", "SERVER_NAME": "example.test", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "wasmlet/test", "X_FULL_URL": "http://example.test:8080/api/items/a%20b?x=1&y=%41&&z",
            "X_MATCHED_ROUTE": "/api/...", "X_RAW_PATH_INFO": "/items/a%20b",
            "HTTP_HOST": "example.test:8080", "HTTP_CONTENT_TYPE": "text/csv", "HTTP_X_TRACE_ID": "t1, t2",
            "HTTP_ACCEPT_ENCODING": "gzip", "GREETING": "hi",
        ]
        #expect(environment == expected)
        #expect(environment["HTTP_AUTHORIZATION"] == nil)
        #expect(environment["HTTP_CONNECTION"] == nil)
    }

    @Test func argvIsThePathThenTheRawQuerySplitOnAmpersands() {
        #expect(Self.request.arguments == ["/api/items/a%20b", "x=1", "y=%41", "", "z"])
        var plain = Self.request
        plain.target = "/"
        #expect(plain.arguments == ["/"])
    }

    @Test func theDefaultRouteMatchesEveryPathAndGivesItAllToPathInfo() {
        var request = Self.request
        request.route = .everything
        request.target = "/a/b"
        let environment = request.environment(service: [:], serverSoftware: "s")
        #expect(environment["SCRIPT_NAME"] == "")
        #expect(environment["PATH_INFO"] == "/a/b")
        #expect(environment["X_MATCHED_ROUTE"] == "/...")
        #expect(HTTPRoute.everything.matches("/anything"))
        #expect(HTTPRoute(pattern: "/api/...").matches("/api"))
        #expect(HTTPRoute(pattern: "/api/...").matches("/api/x"))
        #expect(!HTTPRoute(pattern: "/api/...").matches("/apix"))
        #expect(HTTPRoute(pattern: "/exact").matches("/exact"))
        #expect(!HTTPRoute(pattern: "/exact").matches("/exact/more"))
    }

    @Test func aHostWithoutAPortTakesTheListenersAndIPv6KeepsItsBrackets() {
        #expect(CGIRequest.splitHost("example.test", defaultPort: 81) == ("example.test", "81"))
        #expect(CGIRequest.splitHost("[::1]:8443", defaultPort: 81) == ("[::1]", "8443"))
        #expect(CGIRequest.splitHost("[::1]", defaultPort: 81) == ("[::1]", "81"))
        var request = Self.request
        request.headers = []
        let environment = request.environment(service: [:], serverSoftware: "s")
        #expect(environment["SERVER_NAME"] == "")
        #expect(environment["SERVER_PORT"] == "9000")
        #expect(environment["CONTENT_TYPE"] == "")
    }

    @Test func headerNamesMatchWhateverTheirCase() {
        var request = Self.request
        request.headers = [
            ("x-MiXeD-case", "1"), ("AUTHORIZATION", "secret"), ("coNNection", "close"), ("HOST", "h.test:81"),
            ("content-TYPE", "a/b"),
        ]
        let environment = request.environment(service: [:], serverSoftware: "s")
        #expect(environment["HTTP_X_MIXED_CASE"] == "1")
        #expect(environment["HTTP_AUTHORIZATION"] == nil)
        #expect(environment["HTTP_CONNECTION"] == nil)
        #expect(environment["SERVER_NAME"] == "h.test")
        #expect(environment["SERVER_PORT"] == "81")
        #expect(environment["CONTENT_TYPE"] == "a/b")
        #expect(CGIRequest.variableName(forHeader: "Authorizations") == "HTTP_AUTHORIZATIONS")
        #expect(CGIRequest.splitHost("h.test:8x", defaultPort: 81) == ("h.test:8x", "81"))
        #expect(CGIRequest.splitHost("h.test:", defaultPort: 81) == ("h.test:", "81"))
    }

    @Test func percentDecodingLeavesBadEscapesAlone() {
        #expect(CGIRequest.percentDecoded("/a%2Fb%zz%4") == "/a/b%zz%4")
        #expect(CGIRequest.percentDecoded("%E2%82%AC") == "€")
    }
}
