import Foundation
import Glibc
import WasmletAPI
import WasmletClient

/// The cost of a Prometheus scrape of a busy node: the release `wasmletd` holds `instances`
/// created (never started) instances plus `sleepers` running sleepers, and `GET /metrics` is
/// timed over one keep-alive connection, as Prometheus scrapes. Three daemons, one per setting:
/// per-instance series off, on with the default limit (500), and on for every instance.
struct MetricsBenchmark {
    let wasmletd: String
    let hello: String
    let sleeper: String
    let instances: Int
    var sleepers = 100
    var scrapes = 200

    func run(_ report: Report) async throws {
        guard FileManager.default.isExecutableFile(atPath: wasmletd) else {
            report.add("metrics scrape figures", "not measured: \(wasmletd) missing", "-")
            return
        }
        let total = instances + sleepers
        let settings: [(String, [String])] = [
            ("per-instance series off", []),
            ("per-instance series on, limit 500", ["--metrics-per-instance"]),
            ("per-instance series on, limit \(total)", ["--metrics-per-instance", "--metrics-per-instance-limit", "\(total)"]),
        ]
        for (label, flags) in settings {
            let port = try freeLoopbackPort()
            let daemon = try DaemonUnderTest(
                binary: wasmletd,
                arguments: [
                    "--max-instances", "\(total + 100)", "--memory-budget", "64GiB", "--metrics-address", "127.0.0.1:\(port)",
                ] + flags)
            defer { daemon.stop() }
            try await daemon.waitUntilReady()
            try await populate(daemon)

            let connection = try HTTPConnection(port: port)
            var size = 0
            for _ in 0..<10 { size = try connection.get("/metrics").count }
            var samples = Samples()
            for _ in 0..<scrapes {
                let start = now()
                _ = try connection.get("/metrics")
                samples.add(Double(now() - start))
            }
            let name = "GET /metrics, \(instances) created + \(sleepers) running, \(label)"
            report.add("\(name), p50", milliseconds(samples.median), "≤ 20 ms")
            report.add("\(name), p99", milliseconds(samples.percentile(99)), "-")
            report.add("\(name), size", String(format: "%.1f KiB", Double(size) / 1024), "-")
        }
    }

    /// `instances` hellos created by four clients, then `sleepers` sleepers started.
    private func populate(_ daemon: DaemonUnderTest) async throws {
        let setup = try await WasmletClient.connect(socketPath: daemon.socket)
        let helloDigest = try await setup.create(.with {
            $0.namespace = "bench"; $0.id = "created-0"; $0.path = hello; $0.args = ["hello"]
            $0.limits = .with { $0.memoryBytes = DaemonBenchmark.helloMemoryCap }
        }).moduleDigest
        let start = now()
        let workers = 4
        let count = instances
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    let client = try await WasmletClient.connect(socketPath: daemon.socket)
                    for index in stride(from: 1 + worker, to: count, by: workers) {
                        _ = try await client.create(.with {
                            $0.namespace = "bench"; $0.id = "created-\(index)"; $0.digest = helloDigest; $0.args = ["hello"]
                            $0.limits = .with { $0.memoryBytes = DaemonBenchmark.helloMemoryCap }
                        })
                    }
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        for index in 0..<sleepers {
            let id = "sleeper-\(index)"
            _ = try await setup.create(.with {
                $0.namespace = "bench"; $0.id = id; $0.path = sleeper; $0.args = ["sleeper"]
                $0.limits = .with { $0.memoryBytes = 1 << 20 }
            })
            try await setup.start(namespace: "bench", id: id)
        }
        let listed = try await setup.list().count
        guard listed == instances + sleepers else {
            throw BenchError("expected \(instances + sleepers) instances, the daemon lists \(listed)")
        }
        print(String(format: "  (created %d instances and started %d sleepers in %.1f s)", instances, sleepers, Double(now() - start) / 1e9))
        await setup.close()
    }
}

/// A loopback TCP port nobody listens on (bound to 0, read back, released).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw BenchError("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// One keep-alive HTTP/1.1 connection: GET, read the head, then Content-Length bytes.
final class HTTPConnection {
    private let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard fd >= 0, connected else { throw BenchError("cannot connect to 127.0.0.1:\(port)") }
    }

    deinit { close(fd) }

    /// The body of a 200 response to `GET path`.
    func get(_ path: String) throws -> [UInt8] {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw BenchError("send failed")
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let separator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        var bodyLength = 0
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw BenchError("the daemon closed the metrics connection") }
            received += chunk[0..<count]
            if headEnd == nil, let end = Self.find(separator, in: received) {
                headEnd = end + 4
                let head = String(decoding: received[0..<end], as: UTF8.self)
                guard head.hasPrefix("HTTP/1.1 200") else { throw BenchError("GET \(path): \(head.prefix(40))") }
                for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    bodyLength = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            if let headEnd, received.count >= headEnd + bodyLength {
                return Array(received[headEnd..<(headEnd + bodyLength)])
            }
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for index in 0...(haystack.count - needle.count) where haystack[index] == needle[0] {
            if Array(haystack[index..<(index + needle.count)]) == needle { return index }
        }
        return nil
    }
}
