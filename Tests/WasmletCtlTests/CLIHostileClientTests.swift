import Foundation
import Testing
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Clients that try to tie a served guest up, against the real daemon: ten thousand idle
/// connections, and one that sends a byte a second. The guest's connection limit holds, the
/// daemon keeps its descriptors, and other clients and guests keep being served.
@Suite(.serialized, .enabled(if: daemonInRepository))
struct CLIHostileClientTests {
    /// `wasmletctl run --listen 127.0.0.1:0 httpd.wasm` with `extra` flags; its port.
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

    static func connectNonblocking(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CLIError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 || errno == EINPROGRESS else {
            let error = errno
            close(fd)
            throw CLIError("connect to 127.0.0.1:\(port): \(String(cString: strerror(error)))")
        }
        return fd
    }

    /// 10,000 connections that never send: the guest holds its limit of them (100 here), the
    /// kernel's backlog holds the next ones, the rest are never completed. Meanwhile another
    /// guest and the daemon's API answer; once the clients leave, the guest serves again and
    /// the daemon holds no more descriptors than before.
    @Test(.timeLimit(.minutes(3))) func tenThousandIdleConnectionsStopAtTheLimit() async throws {
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let pid = daemon.child.pid
        let (besieged, port) = try await Self.startServer(daemon, id: "besieged", extra: ["--max-connections", "100"])
        let (neighbour, neighbourPort) = try await Self.startServer(daemon, id: "neighbour")
        #expect(try CLIListenTests.get(port: port) == CLIListenTests.page)
        let baseline = openDescriptorCount(pid: pid)

        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        try #require(limit.rlim_max >= 12_000, "this test holds 10,000 sockets; RLIMIT_NOFILE's hard limit is \(limit.rlim_max)")
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        // Socket calls and /proc readings of this size run off the concurrency pool, which other
        // suites' servers share.
        let clients = try await offThePool { try (0..<10_000).map { _ in try Self.connectNonblocking(port: port) } }
        var closed = false
        defer { if !closed { clients.forEach { close($0) } } }
        let held = { try await offThePool { tcpDescriptors(onLocalPort: port, of: pid) } }
        let queued = {
            try await offThePool { TCPSocketEntry.all().first { $0.localPort == port && $0.state == .listen }?.receiveQueue ?? 0 }
        }

        // The guest holds exactly its limit (and its listener); the backlog fills behind it.
        #expect(
            try await eventually(every: .milliseconds(100)) { try await held() == 101 },
            "the daemon holds \(tcpDescriptors(onLocalPort: port, of: pid)) sockets on the port")
        #expect(try await eventually(every: .milliseconds(100)) { try await queued() >= 1024 }, "accept queue: \(String(describing: TCPSocketEntry.all().first { $0.localPort == port && $0.state == .listen }?.receiveQueue))")
        #expect(try await held() == 101, "no more accepted past the limit")

        // Everyone else is served meanwhile.
        let wrong = try await offThePool {
            (0..<100).filter { _ in (try? CLIListenTests.get(port: neighbourPort)) != CLIListenTests.page }.count
        }
        #expect(wrong == 0, "\(wrong) of 100 requests to the other guest failed")
        let list = try await wasmletctl(["--socket", daemon.socketPath, "list"])
        #expect(list.status == 0 && list.stdout.contains("besieged"), "the API answers: \(list.stderr)")

        // The siege ends: the guest works through its queue of closed connections and serves.
        try await offThePool { clients.forEach { close($0) } }
        closed = true
        #expect(
            await eventually(timeout: .seconds(90), every: .milliseconds(50)) {
                (try? CLIListenTests.get(port: port)) == CLIListenTests.page
            }, "the guest serves again")
        #expect(
            await eventually(every: .milliseconds(20)) { openDescriptorCount(pid: pid) <= baseline },
            "the daemon's descriptors: \(openDescriptorCount(pid: pid)), \(baseline) before")

        #expect(try CLIListenTests.get(port: port, path: "/exit").hasSuffix("bye\n"))
        #expect(try CLIListenTests.get(port: neighbourPort, path: "/exit").hasSuffix("bye\n"))
        #expect(await besieged.finish().status == 0)
        #expect(await neighbour.finish().status == 0)
    }

    /// A client that sends its request a byte a second holds up neither the guest's other
    /// clients (httpd polls them all) nor the daemon, and gets its answer at the end.
    @Test(.timeLimit(.minutes(2))) func aClientSendingAByteASecondHoldsUpNobody() async throws {
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let (server, port) = try await Self.startServer(daemon, id: "patient")
        let request = Array("GET /\r\n\r\n".utf8)
        let (answer, servedMeanwhile) = try await offThePool { () throws -> (String, Int) in
            let slow = try CLIListenTests.connect(port: port)
            defer { close(slow) }
            var served = 0
            for (index, byte) in request.enumerated() {
                var one = byte
                guard send(slow, &one, 1, Int32(MSG_NOSIGNAL)) == 1 else { throw CLIError("send: \(String(cString: strerror(errno)))") }
                guard index < request.count - 1 else { break }
                // Between two of its bytes, other clients of the same guest get full answers.
                if try CLIListenTests.get(port: port) == CLIListenTests.page { served += 1 }
                sleep(1)  // the client's own pace, one byte a second; nothing here waits on it
            }
            return (try CLIListenTests.response(slow), served)
        }
        #expect(servedMeanwhile == request.count - 1, "requests served while the slow one trickled in")
        #expect(answer == CLIListenTests.page, "the slow client's own answer")
        #expect(try CLIListenTests.get(port: port, path: "/exit").hasSuffix("bye\n"))
        #expect(await server.finish().status == 0)
    }
}
