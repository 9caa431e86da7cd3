import Foundation
import Glibc
import Logging
import NIOCore
import NIOPosix
import Synchronization
import WasmletHTTPTrigger
import WasmletRuntime
import WasmletTestSupport

/// A runtime with the HTTP trigger in this process, and services of the test guests on
/// loopback ports; requests go through curl, a real client.
final class ServingHarness: Sendable {
    let runtime: WasmletRuntime
    let host: HTTPTriggerHost
    let group: MultiThreadedEventLoopGroup
    let log: LogCapture

    init(configuration: RuntimeConfiguration = RuntimeConfiguration(), pollWindow: TimeAmount = .zero) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let log = LogCapture()
        self.log = log
        host = HTTPTriggerHost(
            group: group, serverSoftware: "wasmlet/test", logger: Logger(label: "http-test") { _ in log }, observer: nil,
            pollWindow: pollWindow)
        runtime = try WasmletRuntime(configuration: configuration, servingHost: host)
    }

    /// Creates and starts a service of `module` (an example guest's name); returns its port.
    func serve(
        _ module: String = "wagi_probe", id: String = "svc-\(UUID().uuidString.prefix(8))", trigger: HTTPTriggerSpec = HTTPTriggerSpec(),
        limits: InstanceLimits = InstanceLimits(), environment: [String: String] = [:], stdio: StdioSpec = StdioSpec()
    ) throws -> (key: InstanceKey, port: UInt16) {
        let loaded = try runtime.loadModule(path: example(module))
        let key = InstanceKey(namespace: "test", id: id)
        let snapshot = try runtime.create(
            InstanceSpec(
                key: key, moduleDigest: loaded.digest, environment: environment, stdio: stdio, limits: limits,
                listeners: [ListenerSpec(address: "127.0.0.1", port: 0)], httpTrigger: trigger))
        try runtime.start(key)
        return (key, snapshot.listeners[0].boundPort)
    }

    func shutdown() {
        for instance in runtime.list() where instance.state == .running { try? runtime.kill(instance.key) }
        try? group.syncShutdownGracefully()
    }
}

/// What curl printed: the status line's code, the headers (lower-cased names) and the body.
struct CurlAnswer {
    var status: Int
    var headers: [String: String]
    var body: String
}

/// One request through curl (`-i`, so the head comes too); a hang guard of 60 s.
func curl(_ port: UInt16, _ path: String, _ extra: [String] = []) async throws -> CurlAnswer {
    let (termination, output) = try await ChildProcess.run(
        "/usr/bin/curl", ["-sS", "-i", "--max-time", "60"] + extra + ["http://127.0.0.1:\(port)\(path)"])
    guard termination == .exited(0) else { throw TestFailure("curl \(path) \(termination): \(output)") }
    return try parseAnswer(output)
}

/// The last HTTP answer in `output` (curl -i also prints a 100 Continue's head).
func parseAnswer(_ output: String) throws -> CurlAnswer {
    var text = Substring(output)
    while true {
        guard let end = text.range(of: "\r\n\r\n") else { throw TestFailure("no head in: \(output)") }
        let head = text[..<end.lowerBound]
        let rest = text[end.upperBound...]
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw TestFailure("bad status line in: \(output)") }
        if status == 100 {
            text = rest
            continue
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return CurlAnswer(status: status, headers: headers, body: String(rest))
    }
}

/// A log handler that keeps every message, for the stderr test.
final class LogCapture: LogHandler, Sendable {
    private let lines = Mutex<[String]>([])
    var messages: [String] { lines.withLock { $0 } }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .info }
        set {}
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        lines.withLock { $0.append("\(event.message)") }
    }
}
