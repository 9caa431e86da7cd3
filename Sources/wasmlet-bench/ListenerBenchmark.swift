import Foundation
import Glibc
import WasmletRuntime

/// Memory per idle serving instance (issue 12's target, ≤ 128 KiB): `count` httpd guests, each
/// with a listener of its own on 127.0.0.1 (a free port), all waiting in poll() for a
/// connection; the process's RSS before and after, per instance. One guest is asked a GET
/// first and last, so the figure is of guests that serve.
struct IdleListenerBenchmark {
    let guests: Guests
    let count: Int

    func run(_ report: Report) async throws {
        let httpd = try guests.digest("httpd")
        let runtime = guests.runtime
        func startServer() throws -> InstanceKey {
            let key = InstanceKey(namespace: "bench", id: "listen-\(UUID().uuidString)")
            try runtime.create(InstanceSpec(
                key: key, moduleDigest: httpd, args: ["httpd"], limits: InstanceLimits(),
                listeners: [ListenerSpec(address: "127.0.0.1", port: 0)]))
            try runtime.start(key)
            return key
        }
        func port(_ key: InstanceKey) throws -> UInt16 {
            guard let port = try runtime.inspect(key).listeners.first?.boundPort else {
                throw BenchError("instance \(key) has no bound listener")
            }
            return port
        }
        // Warm the module and a guest thread, so one-time costs are not charged to instances.
        let warm = try startServer()
        guard Self.get(port: try port(warm))?.contains("hello from wasmlet httpd") == true else {
            throw BenchError("the warm httpd guest did not answer")
        }
        let blockedBefore = runtime.statistics().guestsBlockedInHostCalls
        let before = residentBytes()
        let mappingsBefore = ResidentMappings.now()
        var keys: [InstanceKey] = []
        for _ in 0..<count { keys.append(try startServer()) }
        // Every guest is idle once it waits in poll() (counted as blocked in a host call).
        while runtime.statistics().guestsBlockedInHostCalls < blockedBefore + count { try await Task.sleep(for: .milliseconds(50)) }
        let after = residentBytes()
        let mappingsAfter = ResidentMappings.now()
        let first = Self.get(port: try port(keys[0]))?.contains("hello from wasmlet httpd") == true
        let last = Self.get(port: try port(keys[keys.count - 1]))?.contains("hello from wasmlet httpd") == true
        report.add("\(count) idle httpd instances, a listener each: RSS per instance",
            String(format: "%.1f KiB (total %.0f MiB; first and last answer: %@)", Double(after &- before) / Double(count) / 1024,
                Double(after) / 1_048_576, first && last ? "yes" : "NO"), "≤ 128 KiB")
        // Where it went: the mappings that grew most.
        for line in mappingsAfter.growth(since: mappingsBefore, per: count) { print("    " + line) }
        for key in keys + [warm] { try runtime.kill(key) }
        for key in keys + [warm] { _ = try await runtime.wait(key); _ = try? runtime.delete(key) }
    }

    /// One blocking HTTP GET / on 127.0.0.1:port; the response, or nil. httpd closes after it.
    static func get(port: UInt16) -> String? {
        guard let fd = try? Loopback.connect(port: port) else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        guard send(fd, request, request.utf8.count, 0) == request.utf8.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { response += buffer[0..<n] } else { break }
        }
        return String(decoding: response, as: UTF8.self)
    }
}
