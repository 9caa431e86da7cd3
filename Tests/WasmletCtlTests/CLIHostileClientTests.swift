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
    /// 10,000 connections that never send: the guest holds its limit of them (100 here), the
    /// kernel's backlog holds the next ones, the rest are never completed. Meanwhile another
    /// guest and the daemon's API answer; once the clients leave, the guest serves again and
    /// the daemon holds no more descriptors than before.
    @Test(.timeLimit(.minutes(3))) func tenThousandIdleConnectionsStopAtTheLimit() async throws {
        let daemon = try await RealDaemon()
        defer { daemon.stop() }
        let pid = daemon.child.pid
        let (besieged, port) = try await CLIListenTests.startServer(daemon, id: "besieged", extra: ["--max-connections", "100"])
        let (neighbour, neighbourPort) = try await CLIListenTests.startServer(daemon, id: "neighbour")
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
        let clients = try await offThePool { try (0..<10_000).map { _ in try connectLoopbackNonblocking(port: port) } }
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
        let (server, port) = try await CLIListenTests.startServer(daemon, id: "patient")
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
