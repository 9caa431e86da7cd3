import Foundation
import Testing
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `wasmletctl run --listen` against the real daemon, with a real HTTP client (raw sockets) and
/// the C guest examples/build/httpd.wasm.
@Suite(.serialized, .enabled(if: daemonInRepository))
struct CLIListenTests {
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 60, tv_usec: 0)  // a hang guard only
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let error = String(cString: strerror(errno))
            close(fd)
            throw CLIError("connect 127.0.0.1:\(port): \(error)")
        }
        return fd
    }

    static func request(_ fd: Int32, path: String) throws {
        let bytes = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw CLIError("send failed")
        }
    }

    static func response(_ fd: Int32) throws -> String {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else { throw CLIError("recv: \(String(cString: strerror(errno)))") }
            result += buffer[0..<n]
        }
        return String(decoding: result, as: UTF8.self)
    }

    static func get(port: UInt16, path: String = "/") throws -> String {
        let fd = try connect(port: port)
        defer { close(fd) }
        try request(fd, path: path)
        return try response(fd)
    }

    static func refused(port: UInt16) -> Bool {
        do {
            close(try connect(port: port))
            return false
        } catch {
            return "\(error)".contains("Connection refused")
        }
    }

    static let page = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 25\r\nConnection: close\r\n\r\nhello from wasmlet httpd\n"

    /// Starts `wasmletctl run --listen 127.0.0.1:0 [extra] httpd.wasm` and returns it with its port,
    /// read from the "listening on" line it prints.
    static func startServer(_ daemon: RealDaemon, id: String, extra: [String] = []) async throws -> (Child, UInt16) {
        let child = try Child(
            wasmletctlPath,
            ["--socket", daemon.socketPath, "run", "--id", id, "--no-stdin", "--listen", "127.0.0.1:0"] + extra
                + ["examples/build/httpd.wasm"],
            currentDirectory: repositoryRoot)
        let prefix = "wasmletctl: listening on 127.0.0.1:"
        #expect(await eventually { child.stderr.contains(" (guest fd 3)\n") }, "stderr: \(child.stderr)")
        let line = try #require(child.stderr.split(separator: "\n").first { $0.hasPrefix(prefix) })
        let port = try #require(UInt16(line.dropFirst(prefix.count).prefix { $0.isNumber }))
        return (child, port)
    }

    @Test func servesHTTPSequentiallyAndConcurrentlyAndInspectShowsTheListener() async throws {
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let (server, port) = try await Self.startServer(daemon, id: "web")
        #expect(port != 0)

        let wrong = try await offThePool {
            var wrong = 0
            for _ in 0..<1000 where try Self.get(port: port) != Self.page { wrong += 1 }
            return wrong
        }
        #expect(wrong == 0, "\(wrong) of 1,000 sequential responses were wrong")

        // 100 connections open at once, all requests sent before any response is read.
        let answers = try await offThePool {
            let clients = try (0..<100).map { _ in try Self.connect(port: port) }
            defer { clients.forEach { close($0) } }
            for client in clients { try Self.request(client, path: "/") }
            return try clients.reversed().map { try Self.response($0) }
        }
        #expect(answers.allSatisfy { $0 == Self.page }, "every concurrent response is right")

        let inspect = try await wasmletctl(["--socket", daemon.socketPath, "inspect", "web"])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.contains("\"boundAddress\": \"127.0.0.1:\(port)\""), "\(inspect.stdout)")
        #expect(inspect.stdout.contains("\"requested\": \"127.0.0.1:0\""))
        #expect(inspect.stdout.contains("\"guestFd\": 3"))

        #expect(try Self.get(port: port, path: "/exit").hasSuffix("bye\n"))
        let ended = await server.finish()
        #expect(ended.status == 0, "the guest exited 0: \(ended.stderr)")
        #expect(Self.refused(port: port), "after the exit the port is closed")
    }

    @Test func afterAKillThePortIsClosed() async throws {
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let (server, port) = try await Self.startServer(daemon, id: "victim")
        #expect(try Self.get(port: port) == Self.page)
        let kill = try await wasmletctl(["--socket", daemon.socketPath, "kill", "victim"])
        #expect(kill.status == 0, "\(kill.stderr)")
        let ended = await server.finish()
        #expect(ended.status == 143, "wasmletctl kill sends TERM by default")
        #expect(Self.refused(port: port))
    }

    @Test func badListenValuesAndAPortInUseAreRefused() async throws {
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let run = ["--socket", daemon.socketPath, "run", "--no-stdin"]
        for (value, message) in [
            ("70000", "the port 70000 is over 65535"),
            ("localhost:80", "\"localhost\" is not an IP address"),
            ("::1:80", "write an IPv6 address in brackets"),
            ("1.2.3.4:", "the port is missing"),
            ("", "it is empty"),
        ] {
            let result = try await wasmletctl(run + ["--listen", value, "examples/build/httpd.wasm"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("--listen: invalid listen address \"\(value)\": \(message)"), "\(value): \(result.stderr)")
        }
        // A port in use: the daemon's bind fails, Create fails, nothing is left behind.
        let (first, port) = try await Self.startServer(daemon, id: "holder")
        let busy = try await wasmletctl(run + ["--id", "second", "--listen", "127.0.0.1:\(port)", "examples/build/httpd.wasm"])
        #expect(busy.status != 0)
        #expect(busy.stderr.contains("listen 127.0.0.1:\(port): address already in use"), "\(busy.stderr)")
        let list = try await wasmletctl(["--socket", daemon.socketPath, "list"])
        #expect(!list.stdout.contains("second"))
        #expect(try Self.get(port: port) == Self.page, "the first server is unaffected")
        #expect(try Self.get(port: port, path: "/exit").hasSuffix("bye\n"))
        #expect(await first.finish().status == 0)
    }
}
