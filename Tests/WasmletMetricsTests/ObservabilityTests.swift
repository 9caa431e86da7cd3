import Foundation
import Glibc
import Testing
import WasmletAPI
import WasmletTestSupport
@testable import WasmletMetrics

/// The body of an HTTP/1.1 response, with chunked transfer coding undone (Prometheus's API
/// answers chunked once a body is large).
func httpBody(_ response: String) -> String {
    guard let range = response.range(of: "\r\n\r\n") else { return "" }
    let head = response[..<range.lowerBound].lowercased()
    var rest = Substring(response[range.upperBound...])
    guard head.contains("transfer-encoding: chunked") else { return String(rest) }
    var body = ""
    while let lineEnd = rest.range(of: "\r\n") {
        guard let size = Int(rest[..<lineEnd.lowerBound].split(separator: ";").first ?? "", radix: 16), size > 0 else { break }
        let start = lineEnd.upperBound
        let bytes = Array(rest[start...].utf8)
        guard bytes.count >= size else { break }
        body += String(decoding: bytes[0..<size], as: UTF8.self)
        rest = Substring(String(decoding: bytes[size...], as: UTF8.self)).dropFirst(2)
    }
    return body
}

/// The sample names of a text-format scrape (`name` of `name{labels} value`).
func sampleNames(_ scrape: String) -> Set<String> {
    Set(scrape.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
        line.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
    })
}

/// The value of the sample written exactly as `series` (name and labels), if present.
func sampleValue(_ scrape: String, _ series: String) -> Double? {
    for line in scrape.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

/// The metric names (wasmlet_*, process_*) in every PromQL expression of the Grafana dashboard.
func dashboardExpressions() throws -> [String] {
    let path = repositoryRoot + "/deploy/grafana/wasmlet-dashboard.json"
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let json = try JSONSerialization.jsonObject(with: data)
    var expressions: [String] = []
    func walk(_ value: Any) {
        if let object = value as? [String: Any] {
            for (key, inner) in object {
                if key == "expr", let text = inner as? String { expressions.append(text) } else { walk(inner) }
            }
        } else if let array = value as? [Any] {
            array.forEach(walk)
        }
    }
    walk(json)
    return expressions
}

func metricNames(in expression: String) -> Set<String> {
    let regex = try! NSRegularExpression(pattern: "\\b(?:wasmlet|process)_[a-z0-9_]+")
    let range = NSRange(expression.startIndex..., in: expression)
    return Set(regex.matches(in: expression, range: range).compactMap { Range($0.range, in: expression).map { String(expression[$0]) } })
}

func createInstance(
    _ client: RuntimeClient, _ id: String, module: String, args: [String]? = nil, fuel: UInt64 = 0, timeoutMs: UInt64 = 0,
    memoryBytes: UInt64 = 0
) async throws {
    var request = Wasmlet_V1_CreateRequest()
    request.namespace = "test"
    request.id = id
    request.module = .path(example(module))
    request.args = args ?? [module]
    request.limits.fuel = fuel
    request.limits.timeoutMs = timeoutMs
    request.limits.memoryBytes = memoryBytes
    _ = try await client.call(WasmletRuntimeAPI.create, request)
}

/// `<directory>/state` as a daemon killed with SIGKILL leaves it: `prepare` runs against that
/// daemon first (its log is first.log).
func stateLeftByKilledDaemon(
    _ directory: TemporaryDirectory, _ prepare: (RuntimeClient, _ state: String) async throws -> Void
) async throws -> String {
    let state = directory.path + "/state"
    let first = try await DaemonProcess(directory: directory, stateDirectory: state, logName: "first.log")
    let client = try await first.client()
    try await prepare(client, state)
    await client.close()
    first.signal(SIGKILL)
    _ = await first.waitForExit()
    return state
}

/// One instance per exit reason the runtime produces (daemon_restarted comes from recovery),
/// created in this order: running (a sleeper left running), hello (exited), hog (out_of_fuel),
/// late (deadline_exceeded), victim (killed), deep (trapped), tiny (failed_to_start).
func exerciseEveryExitReason(_ client: RuntimeClient) async throws {
    try await createInstance(client, "running", module: "sleeper")
    _ = try await client.start("running")
    try await createInstance(client, "hello", module: "hello")
    _ = try await client.start("hello")
    #expect(try await client.wait("hello").reason == .exited)
    try await createInstance(client, "hog", module: "cpuhog", fuel: 100_000)
    _ = try await client.start("hog")
    #expect(try await client.wait("hog").reason == .outOfFuel)
    try await createInstance(client, "late", module: "sleeper", timeoutMs: 100)
    _ = try await client.start("late")
    #expect(try await client.wait("late").reason == .deadlineExceeded)
    try await createInstance(client, "victim", module: "sleeper")
    _ = try await client.start("victim")
    try await client.kill("victim")
    #expect(try await client.wait("victim").reason == .killed)
    try await createInstance(client, "deep", module: "recurse")
    _ = try await client.start("deep")
    #expect(try await client.wait("deep").reason == .trapped)
    try await createInstance(client, "tiny", module: "hello", memoryBytes: 1024)
    _ = try await client.start("tiny")
    #expect(try await client.wait("tiny").reason == .failedToStart)
}

/// Whether this machine lets us make a private mount namespace (root, or a container that
/// allows unshare): needed to give wasmletd its own /run/systemd/journal/socket.
func canUnshareMountNamespace() -> Bool {
    guard access("/usr/bin/unshare", X_OK) == 0 else { return false }
    // A test trait's condition is synchronous: a blocking wait for this quick tool.
    let child = try? ChildProcess(
        "/usr/bin/unshare", ["--mount", "--propagation", "private", "true"],
        environment: ProcessInfo.processInfo.environment)
    return child?.waitBlocking() == .exited(0)
}

/// journald's native protocol, as wasmletd sends it to /run/systemd/journal/socket (a
/// DatagramReceiver the test binds in its own directory; wasmletd reaches it through a symlink
/// in its private /run).
enum JournalEntry {
    /// `NAME=value\n`, or `NAME\n<64-bit little-endian length><value>\n` for values with newlines.
    static func decode(_ bytes: [UInt8]) -> [String: String] {
        var fields: [String: String] = [:]
        var index = 0
        while index < bytes.count {
            guard let end = bytes[index...].firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "=") }) else { break }
            let name = String(decoding: bytes[index..<end], as: UTF8.self)
            if bytes[end] == UInt8(ascii: "=") {
                guard let newline = bytes[end...].firstIndex(of: UInt8(ascii: "\n")) else { break }
                fields[name] = String(decoding: bytes[(end + 1)..<newline], as: UTF8.self)
                index = newline + 1
            } else {
                guard end + 9 <= bytes.count else { break }
                var length = 0
                for (shift, byte) in bytes[(end + 1)..<(end + 9)].enumerated() { length |= Int(byte) << (8 * shift) }
                let start = end + 9
                guard start + length <= bytes.count else { break }
                fields[name] = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
                index = start + length + 1
            }
        }
        return fields
    }
}

/// A Prometheus server started by a test on loopback, killed when the test is done with it.
final class PrometheusServer {
    let child: ChildProcess
    let port: Int

    init(directory: TemporaryDirectory, target: String) throws {
        port = try freePort()
        let config = directory.path + "/prometheus.yml"
        try """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: wasmletd
                static_configs:
                  - targets: ['\(target)']
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let arguments = [
            "--config.file=\(config)", "--storage.tsdb.path=\(directory.path)/tsdb",
            "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
        ]
        child = try ChildProcess(
            "/usr/bin/prometheus", arguments, environment: ProcessInfo.processInfo.environment,
            stdout: directory.path + "/prometheus.log", stderr: nil)
    }

    deinit { stop() }

    /// SIGKILL and reap (brief, and fine from `defer`): its database is a temporary directory.
    func stop() { child.killAndReap() }

    /// GET on the HTTP API; the decoded JSON object, or nil.
    func api(_ pathAndQuery: String) -> [String: Any]? {
        guard let response = try? get(port: port, pathAndQuery), response.status == 200 else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(httpBody(response.text).utf8))) as? [String: Any]
    }

    /// An instant query: the result vector's values, or nil if the query failed.
    func query(_ expression: String) -> [Double]? {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expression
        guard let answer = api("/api/v1/query?query=\(encoded)"), answer["status"] as? String == "success",
            let data = answer["data"] as? [String: Any]
        else { return nil }
        let result = data["result"] as? [[String: Any]] ?? []
        return result.compactMap { ($0["value"] as? [Any])?.last as? String }.compactMap(Double.init)
    }
}

extension DaemonEndToEndTests {
    @Suite struct Observability {
        /// A daemon that has seen every exit reason (daemon_restarted through a kill -9 and a
        /// restart), with per-instance series on and capped: promtool finds nothing, every
        /// reason is counted once, the new gauges are there, a deleted instance's series go,
        /// and every metric the Grafana dashboard uses is in the scrape.
        @Test func everyExitReasonAndPerInstanceSeriesLintClean() async throws {
            let directory = try TemporaryDirectory()
            let state = try await stateLeftByKilledDaemon(directory) { early, _ in
                try await createInstance(early, "orphan", module: "sleeper")
                _ = try await early.start("orphan")
            }

            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, stateDirectory: state,
                arguments: [
                    "--metrics-address", "127.0.0.1:\(port)", "--metrics-per-instance", "--metrics-per-instance-limit", "4",
                ],
                logName: "second.log")
            defer { daemon.killAndReap() }
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 })
            let client = try await daemon.client()
            try await exerciseEveryExitReason(client)
            _ = await statusCode { _ = try await client.inspect("missing") }

            // Exits reach the metrics from the runtime's event queue, just after Wait returns.
            let reasons = ["exited", "out_of_fuel", "deadline_exceeded", "killed", "trapped", "failed_to_start", "daemon_restarted"]
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
                let scrape = body(of: (try? get(port: port, "/metrics").text) ?? "")
                return sampleValue(scrape, "wasmlet_guests_blocked_in_host_calls") == 1
                    && reasons.allSatisfy { sampleValue(scrape, "wasmlet_instance_exits_total{reason=\"\($0)\"}") == 1 }
            }, "the running sleeper counts as blocked in a host call, and every exit is counted")
            let scrape = try get(port: port, "/metrics")
            #expect(scrape.status == 200)
            let metrics = body(of: scrape.text)
            for reason in reasons {
                #expect(sampleValue(metrics, "wasmlet_instance_exits_total{reason=\"\(reason)\"}") == 1, "exits for \(reason)")
            }
            for (series, value) in [
                ("wasmlet_instance_starts_total", 7.0), ("wasmlet_instances{state=\"running\"}", 1),
                // Six exited here, and the orphan recovered as daemon_restarted.
                ("wasmlet_instances{state=\"exited\"}", 7), ("wasmlet_guests_running", 1),
                ("wasmlet_instance_instantiate_duration_seconds_count", 6), ("wasmlet_kill_latency_seconds_count", 1),
                ("wasmlet_api_requests_total{method=\"Inspect\",code=\"NOT_FOUND\"}", 1),
                ("wasmlet_admission_requests_in_flight{method=\"Create\"}", 0),
                ("wasmlet_admission_requests_in_flight{method=\"Start\"}", 0),
                // Live "running" first, then the oldest exited ones: hello, hog, late.
                ("wasmlet_instance_series_omitted", 3),
                ("wasmlet_instance_linear_memory_bytes{namespace=\"test\",id=\"hello\"}", 0),
            ] {
                #expect(sampleValue(metrics, series) == value, "\(series)")
            }
            #expect((sampleValue(metrics, "wasmlet_linear_memory_in_use_bytes") ?? 0) > 0)
            #expect(
                sampleValue(metrics, "wasmlet_instance_linear_memory_bytes{namespace=\"test\",id=\"running\"}")
                    == sampleValue(metrics, "wasmlet_linear_memory_in_use_bytes"))
            // The fuel check traps a few units before the budget's end.
            #expect((90_000...100_000).contains(sampleValue(metrics, "wasmlet_instance_fuel_consumed_total{namespace=\"test\",id=\"hog\"}") ?? 0))
            #expect((sampleValue(metrics, "wasmlet_instance_cpu_seconds_total{namespace=\"test\",id=\"running\"}") ?? -1) >= 0)
            #expect(sampleValue(metrics, "wasmlet_instance_memory_cap_bytes{namespace=\"test\",id=\"late\"}") != nil)
            #expect(sampleValue(metrics, "wasmlet_instance_memory_cap_bytes{namespace=\"test\",id=\"victim\"}") == nil, "past the limit")

            // Every family has HELP; promtool finds nothing.
            let families = Set(metrics.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] })
            let helped = Set(metrics.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
            #expect(families == helped)
            let lint = try await run("/usr/bin/promtool", ["check", "metrics"], stdin: metrics)
            #expect(lint.status == 0, "promtool: \(lint.output)")
            #expect(lint.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool findings: \(lint.output)")

            // Every metric of the dashboard exists in this scrape.
            let names = sampleNames(metrics)
            let used = try dashboardExpressions().reduce(into: Set<String>()) { $0.formUnion(metricNames(in: $1)) }
            #expect(used.count > 20)
            #expect(used.subtracting(names).isEmpty, "the dashboard uses metrics wasmletd does not export: \(used.subtracting(names).sorted())")

            // A deleted instance's series are gone from the next scrape; the next one moves in.
            _ = try await client.delete("hello")
            let after = body(of: try get(port: port, "/metrics").text)
            #expect(!after.contains("id=\"hello\""))
            #expect(sampleValue(after, "wasmlet_instance_memory_cap_bytes{namespace=\"test\",id=\"victim\"}") != nil)
            #expect(sampleValue(after, "wasmlet_instance_series_omitted") == 2)
            await client.close()
        }

        /// A real Prometheus scrapes the daemon every second: the target is up, wasmlet series
        /// can be queried, and every expression of the Grafana dashboard evaluates.
        @Test(.enabled(if: access("/usr/bin/prometheus", X_OK) == 0, "needs the prometheus package"))
        func prometheusScrapesTheDaemon() async throws {
            let directory = try TemporaryDirectory()
            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, arguments: ["--metrics-address", "127.0.0.1:\(port)", "--metrics-per-instance"])
            defer { daemon.killAndReap() }
            let client = try await daemon.client()
            try await createInstance(client, "hello", module: "hello")
            _ = try await client.start("hello")
            _ = try await client.wait("hello")
            try await createInstance(client, "sleeping", module: "sleeper")
            _ = try await client.start("sleeping")

            let prometheus = try PrometheusServer(directory: directory, target: "127.0.0.1:\(port)")
            defer { prometheus.stop() }
            let up = await eventually(timeout: .seconds(90), every: .milliseconds(50)) {
                guard let answer = prometheus.api("/api/v1/targets"), let data = answer["data"] as? [String: Any],
                    let targets = data["activeTargets"] as? [[String: Any]]
                else { return false }
                return targets.contains { $0["health"] as? String == "up" && $0["scrapeUrl"] as? String == "http://127.0.0.1:\(port)/metrics" }
            }
            let log = (try? String(contentsOfFile: directory.path + "/prometheus.log", encoding: .utf8)) ?? ""
            #expect(up, "the wasmletd target never became healthy; prometheus log:\n\(log)")
            #expect(await eventually(timeout: .seconds(30), every: .milliseconds(50)) { prometheus.query("wasmlet_instance_starts_total") == [2] })
            #expect(await eventually(timeout: .seconds(30), every: .milliseconds(50)) {
                prometheus.query("wasmlet_instances{state=\"running\",job=\"wasmletd\"}") == [1]
            })
            #expect(prometheus.query("up{job=\"wasmletd\"}") == [1])
            #expect(prometheus.query("wasmlet_instance_exits_total{reason=\"exited\"}") == [1])
            #expect((prometheus.query("wasmlet_instance_linear_memory_bytes{id=\"sleeping\"}")?.first ?? 0) > 0)

            // The dashboard's expressions are valid PromQL against real data (Grafana's
            // variables replaced as Grafana would): the scrapes above have it.
            for expression in try dashboardExpressions() {
                let concrete = expression.replacingOccurrences(of: "$__rate_interval", with: "10s")
                    .replacingOccurrences(of: "$instance", with: ".*")
                #expect(prometheus.query(concrete) != nil, "Prometheus rejects the dashboard expression \(concrete)")
            }
            await client.close()
        }

        /// Through the real systemd-socket-activate: the daemon serves /metrics on the
        /// inherited descriptor named "metrics" (and binds its API socket itself).
        @Test(.enabled(if: access("/usr/bin/systemd-socket-activate", X_OK) == 0))
        func socketActivatedMetricsDescriptor() async throws {
            let directory = try TemporaryDirectory()
            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, launcher: "/usr/bin/systemd-socket-activate",
                launcherArguments: ["-l", "127.0.0.1:\(port)", "--fdname=metrics"], waitForSocket: false)
            defer { daemon.killAndReap() }
            // systemd-socket-activate starts the daemon on the first connection, which queues.
            #expect(await eventually(timeout: .seconds(60), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 }, "log:\n\(daemon.log)")
            try await daemon.waitUntilServing()
            #expect(daemon.log.contains("serving metrics on the socket-activated descriptor"))
            #expect(!daemon.log.contains("http://"), "no metrics address was bound besides the descriptor")
            let client = try await daemon.client()
            try await createInstance(client, "activated", module: "hello")
            _ = try await client.start("activated")
            _ = try await client.wait("activated")
            await client.close()
            // The exit reaches the metrics from the runtime's event queue, just after Wait returns.
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
                let metrics = body(of: (try? get(port: port, "/metrics").text) ?? "")
                return sampleValue(metrics, "wasmlet_instance_exits_total{reason=\"exited\"}") == 1
            })
            #expect(try get(port: port, "/healthz").status == 200)
        }

        /// With JOURNAL_STREAM naming its stderr, wasmletd sends native journal entries: the
        /// exit of each instance once, with its id, namespace, reason and code as fields. The
        /// daemon runs in a private mount namespace whose /run/systemd/journal/socket leads to
        /// the test's receiver.
        @Test(.enabled(if: canUnshareMountNamespace(), "needs unshare --mount (root)"))
        func journalEntriesCarryTheInstanceFields() async throws {
            let directory = try TemporaryDirectory()
            let receiver = try DatagramReceiver(directory: directory, name: "journal.sock")  // journald
            receiver.startDraining()
            defer { receiver.stopDraining() }
            let script = """
                mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal \
                && ln -s "$WASMLET_TEST_JOURNAL" /run/systemd/journal/socket \
                && JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && exec "$@"
                """
            let daemon = try await DaemonProcess(
                directory: directory, environment: ["WASMLET_TEST_JOURNAL": receiver.path],
                launcher: "/usr/bin/unshare",
                launcherArguments: ["--mount", "--propagation", "private", "sh", "-c", script, "wasmletd-in-namespace"])
            defer { daemon.killAndReap() }
            let client = try await daemon.client()
            try await createInstance(client, "greeter", module: "hello")
            _ = try await client.start("greeter")
            #expect(try await client.wait("greeter").reason == .exited)
            try await createInstance(client, "victim", module: "sleeper")
            _ = try await client.start("victim")
            try await client.kill("victim")
            #expect(try await client.wait("victim").reason == .killed)
            await client.close()

            // The victim's exit entry is the last one this test needs.
            func isVictimExit(_ entry: [String: String]) -> Bool { entry["MESSAGE"] == "instance exited" && entry["WASMLET_ID"] == "victim" }
            #expect(await eventually(timeout: .seconds(30), every: .milliseconds(10)) {
                receiver.drained.map(JournalEntry.decode).contains(where: isVictimExit)
            })
            let entries = receiver.drained.map(JournalEntry.decode)
            #expect(entries.contains { $0["MESSAGE"] == "wasmletd ready" }, "entries: \(entries)")
            let exits = entries.filter { $0["MESSAGE"] == "instance exited" }
            let greeter = exits.filter { $0["WASMLET_ID"] == "greeter" }
            #expect(greeter.count == 1, "one exit entry for greeter: \(exits)")
            if let entry = greeter.first {
                #expect(entry["WASMLET_NAMESPACE"] == "test")
                #expect(entry["WASMLET_REASON"] == "exited")
                #expect(entry["WASMLET_CODE"] == "0")
                #expect(entry["PRIORITY"] == "6")
                #expect(entry["SYSLOG_IDENTIFIER"] == "wasmletd")
                #expect(entry["CODE_FILE"]?.isEmpty == false)
            }
            let victim = exits.filter { $0["WASMLET_ID"] == "victim" }
            #expect(victim.count == 1, "one exit entry for victim: \(exits)")
            #expect(victim.first?["WASMLET_REASON"] == "killed")
            #expect(victim.first?["WASMLET_CODE"] == "137")
            #expect(victim.first?["PRIORITY"] == "5", "a kill is logged at notice")
            // The journal got the entries instead of stderr (no duplicates in the journal).
            #expect(!daemon.log.contains("instance exited"), "stderr: \(daemon.log)")
        }
    }
}

/// The per-instance families' text, without a daemon.
@Suite struct PerInstanceSeriesTests {
    @Test func labelsAreEscapedAndNumbersWrittenExactly() async throws {
        let instances = [
            InstanceNumbers(
                namespace: "we\"ird\\ns", id: "line\nbreak", linearMemoryBytes: 131_072, memoryCapBytes: 1 << 20,
                fuelConsumed: 18_446_744_073_709_551_615, cpuSeconds: 0.000345678),
            InstanceNumbers(namespace: "a", id: "b", linearMemoryBytes: 0, memoryCapBytes: 7, fuelConsumed: 0, cpuSeconds: 12.5),
        ]
        let metrics = WasmletMetrics(states: ["running"], exitReasons: ["exited"]) {
            RuntimeNumbers(perInstance: instances, perInstanceOmitted: 3)
        }
        let text = String(decoding: metrics.scrape(), as: UTF8.self)
        let label = "{namespace=\"we\\\"ird\\\\ns\",id=\"line\\nbreak\"}"
        #expect(text.contains("wasmlet_instance_linear_memory_bytes\(label) 131072\n"))
        #expect(text.contains("wasmlet_instance_memory_cap_bytes\(label) 1048576\n"))
        #expect(text.contains("wasmlet_instance_fuel_consumed_total\(label) 18446744073709551615\n"))
        #expect(text.contains("wasmlet_instance_cpu_seconds_total\(label) 0.000345678\n"))
        #expect(text.contains("wasmlet_instance_cpu_seconds_total{namespace=\"a\",id=\"b\"} 12.5\n"))
        #expect(text.contains("wasmlet_instance_linear_memory_bytes{namespace=\"a\",id=\"b\"} 0\n"))
        #expect(text.contains("\nwasmlet_instance_series_omitted 3\n"))
        let lint = try await run("/usr/bin/promtool", ["check", "metrics"], stdin: text)
        #expect(lint.status == 0 && lint.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(lint.output)")

        let off = WasmletMetrics(states: ["running"], exitReasons: ["exited"]) { RuntimeNumbers() }
        #expect(!String(decoding: off.scrape(), as: UTF8.self).contains("wasmlet_instance_series_omitted"), "off: no per-instance families")
    }

    @Test(arguments: [(0.0, "0"), (1.0, "1"), (0.5, "0.5"), (2.000000001, "2.000000001"), (1e-9, "0.000000001"), (123.25, "123.25")])
    func secondsAreFixedPoint(value: Double, text: String) {
        var buffer: [UInt8] = []
        PerInstanceSeries.appendSeconds(value, into: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == text)
    }
}

extension DaemonEndToEndTests {
    /// Committed admission through the real daemon: caps add up past the budget, and a growth
    /// the budget refuses is the guest's own allocation failure, recorded and counted.
    @Suite struct MemoryAdmission {
        @Test func nodeBudgetDenialIsRecordedAndCountedWhileANeighbourRuns() async throws {
            let directory = try TemporaryDirectory()
            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, arguments: ["--metrics-address", "127.0.0.1:\(port)", "--memory-budget", "8MiB"])
            defer { daemon.killAndReap() }
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 })
            let client = try await daemon.client()
            // Both with the default 128 MiB cap, each far past the 8 MiB budget on its own.
            try await createInstance(client, "neighbour", module: "sleeper")
            _ = try await client.start("neighbour")
            try await createInstance(client, "bomb", module: "membomb")
            _ = try await client.start("bomb")
            let exit = try await client.wait("bomb")
            #expect(exit.code == 3, "membomb exits 3 once malloc fails")
            #expect(exit.memoryBudgetHit)
            #expect(!exit.memoryLimitHit)
            #expect(exit.peakMemoryBytes < 8 << 20)
            #expect(try await client.inspect("neighbour").state == .running)

            let stats = try await client.stats()
            #expect(stats.memoryBudgetBytes == 8 << 20)
            #expect(stats.memoryBudgetDenials >= 1)
            #expect(stats.memoryReservedBytes == 128 << 20, "the neighbour's cap, past the budget")
            #expect(stats.memoryChargedBytes > 0 && stats.memoryChargedBytes < 8 << 20)
            let metrics = body(of: try get(port: port, "/metrics").text)
            #expect(sampleValue(metrics, "wasmlet_memory_budget_denials_total") == Double(stats.memoryBudgetDenials))
            #expect(sampleValue(metrics, "wasmlet_memory_caps_reserved_bytes") == Double(128 << 20))
            #expect((sampleValue(metrics, "wasmlet_memory_charged_bytes") ?? 0) > 0)

            try await client.kill("neighbour")
            #expect(try await client.wait("neighbour").reason == .killed)
            #expect(try await client.stats().memoryChargedBytes == 0)
            await client.close()
        }

        @Test func reserveCapsRefusesTheCreate() async throws {
            let directory = try TemporaryDirectory()
            let daemon = try await DaemonProcess(
                directory: directory, arguments: ["--memory-budget", "200MiB", "--memory-admission", "reserve-caps"])
            defer { daemon.killAndReap() }
            let client = try await daemon.client()
            try await createInstance(client, "first", module: "sleeper")
            let refused = await statusCode { try await createInstance(client, "second", module: "sleeper") }
            #expect(refused?.0 == .resourceExhausted)
            #expect(refused?.1.contains("node memory budget exhausted") == true)
            await client.close()
        }
    }
}
