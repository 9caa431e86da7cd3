import Foundation
import Glibc
import Testing
import WasmletHTTPTrigger
import WasmletRuntime
import WasmletTestSupport

/// The HTTP trigger end to end in this process: real guests (examples/guests/wagi_probe.c), the
/// real NIO server on a loopback port, curl as the client.
@Suite(.serialized) struct HTTPTriggerServingTests {
    @Test func theGuestSeesTheWAGIContractAndAFreshInstanceEveryTime() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (_, port) = try harness.serve(environment: ["GREETING": "hello"])
        for _ in 0..<5 {
            let answer = try await curl(port, "/env?a=1&b=2", ["-H", "X-Probe-Header: yes", "-H", "Authorization: Basic eA=="])
            #expect(answer.status == 200)
            let lines = Set(answer.body.split(separator: "\n").map(String.init))
            for expected in [
                "counter=1", "argv[0]=/env", "argv[1]=a=1", "argv[2]=b=2", "GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=GET",
                "QUERY_STRING=a=1&b=2", "PATH_INFO=/env", "SCRIPT_NAME=", "X_MATCHED_ROUTE=/...", "SERVER_NAME=127.0.0.1",
                "SERVER_PORT=\(port)", "REMOTE_ADDR=127.0.0.1", "SERVER_PROTOCOL=HTTP/1.1", "SERVER_SOFTWARE=wasmlet/test",
                "X_FULL_URL=http://127.0.0.1:\(port)/env?a=1&b=2", "HTTP_X_PROBE_HEADER=yes", "CONTENT_LENGTH=0", "GREETING=hello",
            ] {
                #expect(lines.contains(expected), "missing \(expected) in \(answer.body)")
            }
            #expect(!lines.contains { $0.hasPrefix("HTTP_AUTHORIZATION=") })
            #expect(!lines.contains { $0.hasPrefix("HOME=") || $0.hasPrefix("PATH=") }, "host environment leaked")
        }
    }

    @Test func statusLocationAndCRLFAnswers() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (_, port) = try harness.serve()
        let missing = try await curl(port, "/status")
        #expect(missing.status == 404)
        #expect(missing.body == "nothing at this path\n")
        let moved = try await curl(port, "/location")
        #expect(moved.status == 302)
        #expect(moved.headers["location"] == "/elsewhere")
        let crlf = try await curl(port, "/crlf")
        #expect(crlf.status == 200)
        #expect(crlf.headers["x-probe"] == "crlf")
        #expect(crlf.body == "crlf body\n")
        let head = try await curl(port, "/crlf", ["-I"])
        #expect(head.status == 200)
        #expect(head.headers["content-length"] == "10")
        #expect(head.body.isEmpty)
    }

    @Test func aTenMebibytePostReachesStdinWhole() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        // No deadline is under test here: a busy machine may take long over 10 MiB.
        let (_, port) = try harness.serve(limits: InstanceLimits(timeoutMilliseconds: 600_000))
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var bytes = [UInt8](repeating: 0, count: 10 << 20)
        for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 7 &+ index >> 9) }
        // The probe's checksum: 64-bit little-endian words (10 MiB has no tail).
        var sum: UInt64 = 0
        bytes.withUnsafeBytes { raw in
            for offset in stride(from: 0, to: raw.count, by: 8) {
                sum = sum &* 31 &+ UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: directory.file("body")))
        let plain = try await curl(port, "/echo", ["--data-binary", "@" + directory.file("body")])
        #expect(plain.body == "bytes=\(bytes.count) sum=\(sum)\n")
        // Chunked, with Expect: 100-continue (curl sends it for a body this size).
        let chunked = try await curl(
            port, "/echo", ["--data-binary", "@" + directory.file("body"), "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue"])
        #expect(chunked.body == "bytes=\(bytes.count) sum=\(sum)\n")
    }

    @Test func everyErrorClassGetsItsStatusAndAReason() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        var trigger = HTTPTriggerSpec()
        trigger.maxResponseBytes = 1 << 20
        trigger.maxBodyBytes = 1024
        trigger.maxHeaderBytes = 2048
        let (_, port) = try harness.serve(trigger: trigger, limits: InstanceLimits(memoryBytes: 4 << 20))
        let cases: [(String, [String], Int, String)] = [
            ("/trap", [], 500, "the guest trapped"),
            ("/membomb", [], 500, "the guest ran out of memory"),
            ("/exit3", [], 500, "the guest exited with code 3"),
            ("/garbage", [], 502, "the guest's output is not a CGI response"),
            ("/big", [], 502, "the guest's output is over the limit of 1048576 bytes"),
            ("/echo", ["--data-binary", String(repeating: "b", count: 2000)], 413, "the request body is over the limit of 1024 bytes"),
            ("/env", ["-H", "X-Big: " + String(repeating: "h", count: 3000)], 431, "the request headers are over the limit of 2048 bytes"),
        ]
        for (path, extra, status, reason) in cases {
            let answer = try await curl(port, path, extra)
            #expect(answer.status == status, "\(path): \(answer.status) \(answer.body)")
            #expect(answer.body.hasPrefix(reason), "\(path): \(answer.body)")
            #expect(answer.headers["content-type"]?.hasPrefix("text/plain") == true)
        }
        // The service still answers after all of them.
        #expect(try await curl(port, "/env").status == 200)
        // Long enough for /env on a busy machine, so only the loop can miss it.
        let (_, quick) = try harness.serve(limits: InstanceLimits(timeoutMilliseconds: 2_000))
        let late = try await curl(quick, "/loop")
        #expect(late.status == 504)
        #expect(late.body == "the request's deadline of 2000 ms passed\n")
        #expect(try await curl(quick, "/env").status == 200)
    }

    /// Hostile requests to one service (spinning until their deadline, bombing memory,
    /// trapping, writing garbage), many at once, while another service is asked: every hostile
    /// request gets its error, every neighbour request its answer, and nothing is left running.
    @Test func hostileRequestsLeaveOtherServicesAlone() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        // The spinning requests have a service of their own with a short deadline, so that the
        // others' answers do not depend on how fast a busy machine runs them.
        let (_, spinning) = try harness.serve(limits: InstanceLimits(timeoutMilliseconds: 1_000))
        let (_, hostile) = try harness.serve(limits: InstanceLimits(memoryBytes: 8 << 20))
        let (_, neighbour) = try harness.serve("wagi_hello")
        let expected = ["/loop": 504, "/membomb": 500, "/trap": 500, "/garbage": 502]
        let storm = Task {
            try await withThrowingTaskGroup(of: (String, Int).self) { group in
                for _ in 0..<3 {
                    for path in expected.keys {
                        group.addTask { (path, try await curl(path == "/loop" ? spinning : hostile, path).status) }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        var neighbourAnswers: [CurlAnswer] = []
        for _ in 0..<20 { neighbourAnswers.append(try await curl(neighbour, "/")) }
        let hostileAnswers = try await storm.value
        #expect(neighbourAnswers.allSatisfy { $0.status == 200 && $0.body == "hello from wasmlet\n" })
        #expect(hostileAnswers.count == 12)
        for (path, status) in hostileAnswers { #expect(status == expected[path], "\(path): \(status)") }
        #expect(await eventually { harness.runtime.statistics().requestRunsInProgress == 0 })
        #expect(try await curl(hostile, "/env").status == 200)
    }

    @Test func malformedHTTPIs400() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (_, port) = try harness.serve()
        let answer = try await offThePool { try loopbackExchange(port: port, "GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n") }
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        #expect(answer.contains("malformed HTTP request"))
    }

    @Test func overTheConcurrencyAndQueueIs503WithRetryAfter() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        var trigger = HTTPTriggerSpec()
        trigger.maxConcurrency = 1
        trigger.queueLength = 0
        let (key, port) = try harness.serve(trigger: trigger, limits: InstanceLimits(timeoutMilliseconds: 600_000))
        // A spinning request holds the only slot (until the service's kill below), so the
        // next one finds no room.
        let occupant = Task { try await ChildProcess.run("/usr/bin/curl", ["-sS", "--max-time", "60", "http://127.0.0.1:\(port)/loop"]) }
        #expect(await eventually { harness.runtime.statistics().requestRunsInProgress == 1 })
        let refused = try await curl(port, "/env")
        #expect(refused.status == 503, "\(refused.body)")
        #expect(refused.headers["retry-after"] == "1")
        #expect(refused.body.hasPrefix("the service is at its concurrency and queue limits"))
        try harness.runtime.kill(key)
        _ = try await occupant.value
    }

    /// Requests that wait in the queue past its time are answered 503, in queue order, while
    /// the slot stays held; the gate's one expiry timer serves them all.
    @Test func aRequestWaitingPastTheQueueTimeIs503() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        var trigger = HTTPTriggerSpec()
        trigger.maxConcurrency = 1
        trigger.queueLength = 8
        trigger.queueTimeoutMilliseconds = 200
        let (key, port) = try harness.serve(trigger: trigger, limits: InstanceLimits(timeoutMilliseconds: 600_000))
        let occupant = Task { try await ChildProcess.run("/usr/bin/curl", ["-sS", "--max-time", "60", "http://127.0.0.1:\(port)/loop"]) }
        #expect(await eventually { harness.runtime.statistics().requestRunsInProgress == 1 })
        async let first = curl(port, "/env")
        async let second = curl(port, "/env")
        for answer in try await [first, second] {
            #expect(answer.status == 503, "\(answer.body)")
            #expect(answer.headers["retry-after"] == "1")
            #expect(answer.body.hasPrefix("the request waited 200 ms in the service's queue"), "\(answer.body)")
        }
        // A later one is timed again once the queue has emptied.
        let third = try await curl(port, "/env")
        #expect(third.status == 503 && third.body.hasPrefix("the request waited 200 ms"), "\(third.body)")
        try harness.runtime.kill(key)
        _ = try await occupant.value
    }

    /// The node's instance limit counts request runs: with the service's own record and one
    /// running request at a limit of 2, the next request is refused 503 naming the limit, and
    /// the count comes back once the request is gone.
    @Test func requestsPastTheInstanceLimitAre503() async throws {
        var configuration = RuntimeConfiguration()
        configuration.maxInstances = 2
        let harness = try ServingHarness(configuration: configuration)
        defer { harness.shutdown() }
        let (key, port) = try harness.serve(limits: InstanceLimits(timeoutMilliseconds: 600_000))
        let occupant = Task { try await ChildProcess.run("/usr/bin/curl", ["-sS", "--max-time", "60", "http://127.0.0.1:\(port)/loop"]) }
        #expect(await eventually { harness.runtime.statistics().requestRunsInProgress == 1 })
        let refused = try await curl(port, "/env")
        #expect(refused.status == 503, "\(refused.body)")
        #expect(refused.body.contains("instance limit reached: 2 live instances"), "\(refused.body)")
        try harness.runtime.kill(key)
        _ = try await occupant.value
        #expect(await eventually { harness.runtime.statistics().requestRunsInProgress == 0 })
        // Both slots are free again: a new service and its request fit.
        _ = try harness.runtime.delete(key)
        let (_, again) = try harness.serve()
        #expect(try await curl(again, "/env").status == 200)
    }

    @Test func keepAliveAndPipelinedRequestsAreAnsweredInOrder() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (_, port) = try harness.serve()
        let paths = ["/status", "/crlf", "/env?n=3", "/location", "/env?n=5"]
        let request = paths.map { "GET \($0) HTTP/1.1\r\nHost: h\r\n\r\n" }.joined() + "GET /crlf HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        let answer = try await offThePool { try loopbackExchange(port: port, request) }
        let statuses = answer.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
        #expect(statuses == ["404", "200", "200", "302", "200", "200"], "\(answer)")
        let third = answer.range(of: "argv[1]=n=3")
        let fifth = answer.range(of: "argv[1]=n=5")
        #expect(third != nil && fifth != nil && third!.lowerBound < fifth!.lowerBound)
    }

    /// 1,000 keep-alive connections open at once, each with a request sent before any answer
    /// is read, then a second request on every one of them: all 2,000 are answered, and no
    /// connection is closed in between. The queue limits are raised so
    /// that a slow machine makes the test slower, not a 503.
    @Test func aThousandConcurrentKeepAliveConnections() async throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        try #require(limit.rlim_max >= 4_096, "this test holds 2,000 sockets; RLIMIT_NOFILE's hard limit is \(limit.rlim_max)")
        if limit.rlim_cur < 4_096 {
            limit.rlim_cur = min(limit.rlim_max, 8_192)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let trigger = HTTPTriggerSpec(queueLength: 1_000, queueTimeoutMilliseconds: 600_000, requestReadTimeoutMilliseconds: 600_000)
        let (key, port) = try harness.serve("wagi_hello", trigger: trigger, limits: InstanceLimits(maxConnections: 2_000))
        let wrong = try await offThePool { () throws -> [String] in
            let connections = try (0..<1_000).map { _ in try connectLoopback(port: port) }
            // A hang guard only: the last of 1,000 queued answers may come late on a busy machine.
            var guardTime = timeval(tv_sec: 300, tv_usec: 0)
            for fd in connections { _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &guardTime, socklen_t(MemoryLayout<timeval>.size)) }
            defer { connections.forEach { close($0) } }
            var wrong: [String] = []
            for round in 0..<2 {
                let request = Array("GET /?round=\(round) HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
                for fd in connections where send(fd, request, request.count, Int32(MSG_NOSIGNAL)) != request.count {
                    throw TestFailure("send on connection \(fd) in round \(round): \(String(cString: strerror(errno)))")
                }
                for (index, fd) in connections.enumerated() {
                    let answer = try readOneResponse(fd)
                    if !(answer.hasPrefix("HTTP/1.1 200 ") && answer.hasSuffix("\r\n\r\nhello from wasmlet\n")) {
                        wrong.append("round \(round), connection \(index): \(answer)")
                    }
                }
            }
            return wrong
        }
        #expect(wrong.isEmpty, "\(wrong.count) wrong answers, the first: \(wrong.first ?? "")")
        #expect(harness.host.statistics(of: key)?.requests == 2_000)
    }

    /// A route table (WAGI's modules.toml): routes tried in order, each with its module;
    /// SCRIPT_NAME, PATH_INFO and X_MATCHED_ROUTE follow the matched route; a path no route
    /// matches is a 404 that names it, and the connection stays usable.
    @Test func routesPickTheModuleAndUnmatchedPathsAre404() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let hello = try harness.runtime.loadModule(path: example("wagi_hello")).digest
        let probe = try harness.runtime.loadModule(path: example("wagi_probe")).digest
        let trigger = HTTPTriggerSpec(routes: [
            HTTPRouteSpec(route: "/exact", moduleDigest: hello), HTTPRouteSpec(route: "/probe/...", moduleDigest: probe),
            HTTPRouteSpec(route: "/p/...", moduleDigest: hello), HTTPRouteSpec(route: "/p/shadowed/...", moduleDigest: probe),
        ])
        let (_, port) = try harness.serve("wagi_hello", trigger: trigger)
        #expect(try await curl(port, "/exact").body == "hello from wasmlet\n")
        let env = try await curl(port, "/probe/env?q=1")
        #expect(env.status == 200)
        for line in ["SCRIPT_NAME=/probe", "PATH_INFO=/env", "X_MATCHED_ROUTE=/probe/...", "X_RAW_PATH_INFO=/env", "counter=1"] {
            #expect(env.body.components(separatedBy: "\n").contains(line), "\(line) in \(env.body)")
        }
        // The first match wins.
        #expect(try await curl(port, "/p/shadowed/env").body == "hello from wasmlet\n")
        for path in ["/", "/exact/more", "/probex", "/other"] {
            let missing = try await curl(port, path)
            #expect(missing.status == 404, "\(path)")
            #expect(missing.body == "no route of this service matches \(path)\n", "\(path)")
        }
        // Keep-alive survives a 404: both answers on one connection.
        let both = try await offThePool {
            try loopbackExchange(port: port, "GET /none HTTP/1.1\r\nHost: h\r\n\r\nGET /exact HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        }
        #expect(both.hasPrefix("HTTP/1.1 404 ") && both.hasSuffix("hello from wasmlet\n"), "\(both)")
    }

    /// Routes that cannot mean anything, and modules that are not loaded, fail the Create.
    @Test func badRoutesFailTheCreate() throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let hello = try harness.runtime.loadModule(path: example("wagi_hello")).digest
        for (route, digest, expected) in [
            ("api/...", hello, "a route starts with /"), ("/a/.../b", hello, "may only end a route"), ("/a b", hello, "spaces"),
            ("/q?x", hello, "without ? or #"), ("/fine", "sha256:" + String(repeating: "0", count: 64), "is not loaded"),
        ] {
            #expect {
                _ = try harness.serve("wagi_hello", trigger: HTTPTriggerSpec(routes: [HTTPRouteSpec(route: route, moduleDigest: digest)]))
            } throws: { error in
                "\(error)".contains(expected)
            }
        }
        #expect(harness.runtime.list().isEmpty)
    }

    @Test func guestStderrGoesToTheServiceLog() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (_, port) = try harness.serve()
        #expect(try await curl(port, "/stderr").body == "logged\n")
        #expect(harness.log.messages.contains("probe wrote this to stderr"))
    }

    /// A service with a stderr path of its own (containerd's FIFO, which `kubectl logs` reads)
    /// gets its requests' stderr lines there, in order, and not in the daemon's log.
    @Test func guestStderrGoesToTheServicesOwnFIFO() async throws {
        let directory = try TemporaryDirectory()
        let fifo = directory.path + "/stderr"
        #expect(mkfifo(fifo, 0o600) == 0)
        let reader = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        #expect(reader >= 0)
        defer { close(reader) }
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (_, port) = try harness.serve(stdio: StdioSpec(stderr: fifo))
        for _ in 0..<3 { #expect(try await curl(port, "/stderr").body == "logged\n") }
        let expected = String(repeating: "probe wrote this to stderr\n", count: 3)
        var read: [UInt8] = []
        #expect(await eventually {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { Glibc.read(reader, $0.baseAddress, $0.count) }
            if count > 0 { read += buffer[0..<count] }
            return read.count >= expected.utf8.count
        })
        #expect(String(decoding: read, as: UTF8.self) == expected)
        #expect(!harness.log.messages.contains("probe wrote this to stderr"))
    }

    /// A kill ends the service as a killed server ends: its connections close at once (the
    /// client of a running request gets no answer), its guests are killed, its port refuses.
    @Test func killStopsTheServiceAndItsRunningRequests() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        let (key, port) = try harness.serve(limits: InstanceLimits(timeoutMilliseconds: 600_000))
        let looping = Task { try await ChildProcess.run("/usr/bin/curl", ["-sS", "--max-time", "60", "http://127.0.0.1:\(port)/loop"]) }
        #expect(await eventually { harness.runtime.statistics().requestRunsInProgress == 1 })
        try harness.runtime.kill(key)
        let exit = try await harness.runtime.wait(key)
        #expect(exit.code == 137)
        #expect(exit.reason == .killed)
        let (termination, output) = try await looping.value
        #expect(termination == .exited(52), "curl: \(output)")  // "Empty reply from server"
        #expect(await eventually { harness.runtime.statistics().requestRunsInProgress == 0 })
        #expect(!loopbackAccepts(port))
        #expect(harness.host.statistics(of: key) == nil)
    }

    @Test func aSlowClientIsClosedWithoutEverHoldingAGuest() async throws {
        let harness = try ServingHarness()
        defer { harness.shutdown() }
        var trigger = HTTPTriggerSpec()
        trigger.requestReadTimeoutMilliseconds = 300
        let (key, port) = try harness.serve(trigger: trigger)
        let closedAfter = try await offThePool { () -> Int in
            let fd = try connectLoopback(port: port)
            defer { close(fd) }
            // One header byte at a time, each sent after the server has had the last one.
            let request = Array("GET /env HTTP/1.1\r\nHost: h\r\nX-Slow: \(String(repeating: "s", count: 100))\r\n\r\n".utf8)
            for (index, byte) in request.enumerated() {
                var one = byte
                if send(fd, &one, 1, Int32(MSG_NOSIGNAL)) != 1 { return index }
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                // Readable means closed here (nothing is answered before the request is whole).
                if poll(&entry, 1, 50) > 0 { return index }
            }
            return request.count
        }
        #expect(closedAfter < 80, "the slow client was never closed")
        #expect(harness.host.statistics(of: key)?.requests == 0)
    }
}

/// Reads one HTTP/1.1 response with a Content-Length from a blocking socket, no further.
func readOneResponse(_ fd: Int32) throws -> String {
    var bytes: [UInt8] = []
    var byte: UInt8 = 0
    let end = Array("\r\n\r\n".utf8)
    while bytes.count < 4 || Array(bytes.suffix(4)) != end {
        let count = recv(fd, &byte, 1, 0)
        if count < 0 && errno == EINTR { continue }
        guard count == 1 else { throw TestFailure("connection \(fd) ended in a response head after \(bytes.count) bytes") }
        bytes.append(byte)
    }
    let head = String(decoding: bytes, as: UTF8.self)
    let lengthLine = head.lowercased().components(separatedBy: "\r\n").first { $0.hasPrefix("content-length:") }
    guard let length = lengthLine.flatMap({ Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }) else {
        throw TestFailure("no Content-Length in \(head)")
    }
    var body = [UInt8](repeating: 0, count: length)
    var read = 0
    while read < length {
        let count = body.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + read, length - read, 0) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { throw TestFailure("connection \(fd) ended in a body") }
        read += count
    }
    return head + String(decoding: body, as: UTF8.self)
}
