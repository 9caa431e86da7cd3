import Foundation
import Testing
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `wasmletctl serve` against the real daemon: the HTTP trigger answers curl, `inspect` and
/// `list` show the service's address and counts, the daemon's metrics count every answer by
/// code and reason and lint clean with promtool, and `delete` stops the service alone.
@Suite(.serialized, .enabled(if: daemonInRepository))
struct CLIServeTests {
    /// curl's status code and body; curl's own exit status when it got no answer.
    struct Answer: Equatable {
        var status: Int
        var body: String
    }

    static func curl(_ url: String) async throws -> (exit: Int32, answer: Answer) {
        let result = try await Child("/usr/bin/curl", ["-sS", "--max-time", "30", "-w", "\n%{http_code}", url])
            .finish(timeout: .seconds(60))
        var lines = result.stdout.components(separatedBy: "\n")
        let status = Int(lines.popLast() ?? "") ?? 0
        return (result.status, Answer(status: status, body: lines.joined(separator: "\n")))
    }

    static func serve(_ daemon: RealDaemon, id: String, module: String, extra: [String] = []) async throws -> String {
        let served = try await wasmletctl(
            ["--socket", daemon.socketPath, "serve", "--id", id, "--listen", "127.0.0.1:0"] + extra + ["examples/build/\(module).wasm"])
        #expect(served.status == 0, "serve: \(served.stderr)")
        #expect(served.stderr.contains("default/\(id) is serving"), "\(served.stderr)")
        let url = served.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(url.hasPrefix("http://127.0.0.1:") && url.hasSuffix("/"), "serve printed \(served.stdout)")
        return url
    }

    /// The port the daemon's log says its metrics endpoint is bound to (`--metrics-address
    /// 127.0.0.1:0` picks a free one).
    static func metricsPort(_ daemon: RealDaemon) async throws -> Int {
        let prefix = "serving metrics on http://127.0.0.1:"
        #expect(await eventually { daemon.log().contains(prefix) }, "\(daemon.log())")
        let line = try #require(daemon.log().components(separatedBy: "\n").first { $0.contains(prefix) })
        let after = try #require(line.range(of: prefix)).upperBound
        return try #require(Int(line[after...].prefix { $0.isNumber }))
    }

    @Test func serveInspectListMetricsAndDelete() async throws {
        let daemon = try await RealDaemon(arguments: ["--metrics-address", "127.0.0.1:0"])
        defer { daemon.stop() }
        let metricsPort = try await Self.metricsPort(daemon)
        let web = try await Self.serve(daemon, id: "web", module: "wagi_probe", extra: ["--max-concurrency", "4", "--env", "TIER=test"])
        let hello = try await Self.serve(daemon, id: "hello", module: "wagi_hello")

        let env = try await Self.curl(web + "env?a=1")
        #expect(env.exit == 0)
        #expect(env.answer.status == 200)
        let lines = Set(env.answer.body.components(separatedBy: "\n"))
        for line in ["counter=1", "TIER=test", "QUERY_STRING=a=1", "REQUEST_METHOD=GET", "PATH_INFO=/env"] {
            #expect(lines.contains(line), "\(line) in \(env.answer.body)")
        }
        #expect(!lines.contains { $0.hasPrefix("HOME=") || $0.hasPrefix("PATH=") }, "nothing from the host")
        for (path, status) in [("status", 404), ("trap", 500), ("garbage", 502), ("location", 302)] {
            #expect(try await Self.curl(web + path).answer.status == status, "\(path)")
        }
        for _ in 0..<2 { #expect(try await Self.curl(hello).answer == Answer(status: 200, body: "hello from wasmlet\n")) }

        let inspect = try await wasmletctl(["--socket", daemon.socketPath, "inspect", "web"])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let stats = try #require(document["httpStats"] as? [String: Any], "\(inspect.stdout)")
        #expect(stats["requests"] as? Int == 5)
        #expect(stats["running"] as? Int == 0)
        #expect((document["httpTrigger"] as? [String: Any])?["maxConcurrency"] as? Int == 4)
        let address = try #require((document["listeners"] as? [[String: Any]])?.first?["boundAddress"] as? String)
        #expect(web == "http://\(address)/")

        let list = try await wasmletctl(["--socket", daemon.socketPath, "list"])
        #expect(list.stdout.components(separatedBy: "\n").first?.hasSuffix("SERVING") == true, "\(list.stdout)")
        #expect(list.stdout.contains("\(address) (5 requests)"), "\(list.stdout)")

        // Answers reach the metrics as they are sent, so the scrape after them has them all.
        let scrape = try await offThePool { try loopbackExchange(port: UInt16(metricsPort), "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n") }
        let metrics = String(scrape[(scrape.range(of: "\r\n\r\n")?.upperBound ?? scrape.startIndex)...])
        for (series, value) in [
            ("wasmlet_http_requests_total{service=\"default/web\",code=\"200\"}", 1.0),
            ("wasmlet_http_requests_total{service=\"default/web\",code=\"404\"}", 1),
            ("wasmlet_http_requests_total{service=\"default/web\",code=\"500\"}", 1),
            ("wasmlet_http_requests_total{service=\"default/web\",code=\"502\"}", 1),
            ("wasmlet_http_requests_total{service=\"default/hello\",code=\"200\"}", 2),
            ("wasmlet_http_request_errors_total{service=\"default/web\",reason=\"trap\"}", 1),
            ("wasmlet_http_request_errors_total{service=\"default/web\",reason=\"not_cgi\"}", 1),
            ("wasmlet_http_request_duration_seconds_count{service=\"default/web\"}", 5),
            ("wasmlet_http_requests_in_flight{service=\"default/web\"}", 0),
            // On the event loop: web's status, trap and location, and hello's second request.
            // The first request of each service, and web's garbage after the trap dropped its
            // instance, found no warm instance and went straight to a guest thread.
            ("wasmlet_http_request_slices_total{result=\"kept\"}", 4),
            ("wasmlet_http_request_slices_total{result=\"outgrown\"}", 0),
        ] {
            let sample = metrics.components(separatedBy: "\n").first { $0.hasPrefix(series + " ") }
            #expect(sample.flatMap { Double($0.dropFirst(series.count + 1)) } == value, "\(series) in\n\(metrics)")
        }
        // Polling after answers is on by default; how much it caught depends on timing, so
        // only the series' presence is checked here (AnswerPollingTests checks the counts).
        for series in ["wasmlet_http_poll_caught_requests_total", "wasmlet_http_poll_seconds_total"] {
            let sample = metrics.components(separatedBy: "\n").first { $0.hasPrefix(series + " ") }
            #expect(sample.flatMap { Double($0.dropFirst(series.count + 1)) }.map { $0 >= 0 } == true, "\(series) in\n\(metrics)")
        }
        let scrapeFile = daemon.directory + "/scrape.txt"
        try metrics.write(toFile: scrapeFile, atomically: true, encoding: .utf8)
        let lint = try await Child("/usr/bin/promtool", ["check", "metrics"], stdin: scrapeFile).finish(timeout: .seconds(60))
        #expect(lint.status == 0 && (lint.stdout + lint.stderr).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
                "promtool: \(lint.stdout)\(lint.stderr)")

        let deleted = try await wasmletctl(["--socket", daemon.socketPath, "delete", "web"])
        #expect(deleted.status == 0, "\(deleted.stderr)")
        #expect(try await Self.curl(web + "env").exit == 7, "the deleted service's port refuses")
        #expect(try await Self.curl(hello).answer.status == 200, "the other service goes on")
        // A stopped service's series go with it (services come and go all day on a node).
        let later = try await offThePool { try loopbackExchange(port: UInt16(metricsPort), "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n") }
        #expect(!later.contains("service=\"default/web\""), "\(later)")
        #expect(later.contains("wasmlet_http_requests_total{service=\"default/hello\",code=\"200\"} 3"), "\(later)")
    }
    /// `--routes modules.toml MODULE`: the table's routes first, MODULE for the rest; a bad
    /// table fails before anything is created.
    @Test func routesFromAModulesFile() async throws {
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let table = daemon.directory + "/modules.toml"
        try """
            [[module]]
            route = "/probe/..."
            module = "\(repositoryRoot)/examples/build/wagi_probe.wasm"
            """.write(toFile: table, atomically: true, encoding: .utf8)
        let url = try await Self.serve(daemon, id: "routed", module: "wagi_hello", extra: ["--routes", table])
        let env = try await Self.curl(url + "probe/env")
        #expect(env.answer.status == 200)
        #expect(env.answer.body.contains("X_MATCHED_ROUTE=/probe/...\n"), "\(env.answer.body)")
        #expect(try await Self.curl(url + "elsewhere").answer == Answer(status: 200, body: "hello from wasmlet\n"))

        try "[[module]]\nroute = \"/\"\nmodule = \"x.wasm\"\nvolumes = {}\n".write(toFile: table, atomically: true, encoding: .utf8)
        let refused = try await wasmletctl(
            ["--socket", daemon.socketPath, "serve", "--id", "bad", "--listen", "127.0.0.1:0", "--routes", table, "examples/build/wagi_hello.wasm"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--routes"), "\(refused.stderr)")
        // A table that aborts toml++ (a date-time with no time after its T): parsed in a child
        // first, it is an error message and exit 1, not a crash of wasmletctl.
        try "[[module]]\nroute = 2000-01-01T:00\nmodule = \"x.wasm\"\n".write(toFile: table, atomically: true, encoding: .utf8)
        let crashing = try await wasmletctl(
            ["--socket", daemon.socketPath, "serve", "--id", "bad", "--listen", "127.0.0.1:0", "--routes", table, "examples/build/wagi_hello.wasm"])
        #expect(crashing.status == 1)
        #expect(
            crashing.stderr.hasPrefix("wasmletctl: --routes: \(table): the TOML parser (toml++, inside TOMLKit) crashed on this text (signal 6: Aborted)"),
            "\(crashing.stderr)")
        let list = try await wasmletctl(["--socket", daemon.socketPath, "list"])
        #expect(!list.stdout.contains("bad"), "\(list.stdout)")
    }
    /// A service is a durable instance: after the daemon is killed (-9) and started again on
    /// its state, the service is reported as any guest is, exited 137 daemon_restarted, so a
    /// kubelet restarts its pod; its port no longer answers.
    @Test func aServiceOutlivedByItsDaemonIsReportedDaemonRestarted() async throws {
        let first = try await RealDaemon()
        let url = try await Self.serve(first, id: "durable", module: "wagi_hello")
        #expect(try await Self.curl(url).answer.status == 200)
        _ = first.child.killAndReap()
        let second = try await RealDaemon(reusing: first.directory)
        defer { second.stop() }
        let inspect = try await wasmletctl(["--socket", second.socketPath, "inspect", "durable"])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        #expect(document["state"] as? String == "exited")
        let exit = try #require(document["exit"] as? [String: Any], "\(inspect.stdout)")
        #expect(exit["code"] as? Int == 137)
        #expect(exit["reason"] as? String == "daemon_restarted")
        #expect(try await Self.curl(url).exit == 7, "nobody serves the port any more")
    }
}
