import Foundation
import Glibc
import Testing
import WasmletAPI
import WasmletTestSupport

/// A free loopback TCP port (bound to 0, read back, released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw TestFailure("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Sends raw bytes to 127.0.0.1:port and reads until the server closes (or 5 s pass).
/// Returns the status code of the first response line and the whole response.
func rawHTTP(port: Int, _ request: String) throws -> (status: Int, text: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { throw TestFailure("cannot connect to port \(port)") }
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        sent += n
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    let end = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < end {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 500) > 0 else { continue }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    let parts = text.split(separator: " ", maxSplits: 2)
    let status = parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
    return (status, text)
}

func get(port: Int, _ path: String) throws -> (status: Int, text: String) {
    try rawHTTP(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

func body(of response: String) -> String {
    guard let range = response.range(of: "\r\n\r\n") else { return "" }
    return String(response[range.upperBound...])
}

/// Runs a program; returns its exit status (minus the signal number if killed) and combined output.
func run(_ executable: String, _ arguments: [String], stdin: String? = nil) async throws -> (status: Int32, output: String) {
    let result = try await ChildProcess.run(executable, arguments, input: stdin)
    return (result.termination.status, result.output)
}

extension DaemonEndToEndTests {
    @Suite struct MetricsEndpointTests {
        func create(_ client: RuntimeClient, _ id: String, module: String, fuel: UInt64 = 0, timeoutMs: UInt64 = 0) async throws {
            var request = Wasmlet_V1_CreateRequest()
            request.namespace = "test"
            request.id = id
            request.module = .path(example(module))
            request.args = [id]
            request.limits.fuel = fuel
            request.limits.timeoutMs = timeoutMs
            _ = try await client.call(WasmletRuntimeAPI.create, request)
        }

        // The promtool check of a scrape after every exit reason, with per-instance series on,
        // is `Observability.everyExitReasonAndPerInstanceSeriesLintClean` (ObservabilityTests.swift).

        @Test func badRequestsGet4xxAndTheDaemonKeepsServing() async throws {
            let directory = try TemporaryDirectory()
            let port = try freePort()
            let daemon = try await DaemonProcess(directory: directory, arguments: ["--metrics-address", "127.0.0.1:\(port)"])
            defer { daemon.killAndReap() }
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 })

            #expect(try get(port: port, "/nope").status == 404)
            #expect(try rawHTTP(port: port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").status == 405)
            #expect(try rawHTTP(port: port, "DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status == 405)
            #expect(try rawHTTP(port: port, "THIS IS NOT HTTP\r\n\r\n").status == 400)
            #expect(try rawHTTP(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n").status == 400)
            let big = String(repeating: "a", count: 20_000)
            let oversized = try rawHTTP(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: \(big)\r\nConnection: close\r\n\r\n")
            #expect((400..<500).contains(oversized.status), "oversized headers: \(oversized.status)")
            // A connection that sends half a request and goes away.
            _ = try? rawHTTP(port: port, "GET /met")

            #expect(try get(port: port, "/metrics").status == 200)
            #expect(try get(port: port, "/healthz").status == 200)
            let client = try await daemon.client()
            #expect(try await client.version().version.isEmpty == false)
            await client.close()
            #expect(daemon.isRunning)
        }

        @Test func readyzTurns503WhileDraining() async throws {
            let directory = try TemporaryDirectory()
            let port = try freePort()
            let daemon = try await DaemonProcess(
                directory: directory, arguments: ["--metrics-address", "127.0.0.1:\(port)", "--shutdown-grace", "3s"])
            defer { daemon.killAndReap() }
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 200 })
            let client = try await daemon.client()
            try await create(client, "s", module: "sleeper")
            _ = try await client.start("s")
            await client.close()

            daemon.signal(SIGTERM)
            #expect(await eventually(timeout: .seconds(3), every: .milliseconds(50)) { (try? get(port: port, "/readyz").status) == 503 })
            #expect(try get(port: port, "/healthz").status == 200)
            #expect(await daemon.waitForExit(timeout: .seconds(30))?.status == 0)
        }
    }
}
