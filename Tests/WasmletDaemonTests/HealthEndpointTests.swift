import Dispatch
import Foundation
import Glibc
import NIOCore
import NIOPosix
import Testing
@testable import WasmletContainerd
@testable import WasmletDaemon
import WasmletMetrics
import WasmletRuntime
import WasmletTestSupport

/// The status line's code of `GET path` on 127.0.0.1:port (0 when nothing answered).
private func httpStatus(port: Int, _ path: String) -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { return 0 }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&poller, 1, 5_000) == 1 else { return 0 }
    var buffer = [UInt8](repeating: 0, count: 512)
    let count = recv(fd, &buffer, buffer.count, 0)
    guard count > 12 else { return 0 }
    return Int(String(decoding: buffer[9..<12], as: UTF8.self)) ?? 0
}

/// A task executor of one test's own: the probe's heartbeat must pass through "the pool", and in
/// a test process the global pool is shared with hundreds of other tests whose synchronous
/// bodies (module loads, guest runs) can hold both its threads for many seconds at the start of
/// a run; the probe then rightly calls the pool stalled (seen in CI: a 10 s wait for an idle
/// heartbeat ran out while every test in the process was held up by about 20 s).
private final class PrivatePool: TaskExecutor, @unchecked Sendable {
    private let queue = DispatchQueue(label: "health-test-pool")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}

/// `/healthz` follows the progress probe the systemd watchdog uses: a wedged event loop turns
/// it 503 at the next tick, and it recovers once the heartbeat gets through.
@Suite struct HealthEndpointTests {
    @Test func healthzTurns503WhileAnEventLoopIsWedgedAndRecovers() async throws {
        let runtime = try WasmletRuntime()
        let wedgeable = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let probe = ProgressProbe(runtime: runtime, group: wedgeable, pool: PrivatePool())
        let server = try await MetricsServer.bind(
            address: "127.0.0.1:0",
            endpoints: MetricsServer.Endpoints(metrics: { [] }, healthy: { probe.isHealthy }, ready: { true }))
        let port = try #require(server.localAddress?.port)

        #expect(probe.isMakingProgress(), "the first tick has nothing to judge")
        #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { probe.isMakingProgress() }, "an idle daemon makes progress")
        #expect(httpStatus(port: port, "/healthz") == 200)

        // Wedge the loop. A heartbeat already past it still comes back, so the tick after it
        // is still healthy; the one it launched cannot pass, so a later tick is not.
        let release = DispatchSemaphore(value: 0)
        wedgeable.next().execute { release.wait() }
        #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { !probe.isMakingProgress() }, "the heartbeat did not come back")
        #expect(httpStatus(port: port, "/healthz") == 503)
        #expect(httpStatus(port: port, "/healthz") == 503, "reading /healthz does not tick the probe")

        release.signal()
        #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { probe.isMakingProgress() })
        #expect(httpStatus(port: port, "/healthz") == 200)
        await server.shutdown()
        try await wedgeable.shutdownGracefully()
    }

    /// The probe that gates WATCHDOG=1 (`Watchdog` pings only on ticks it passes; see
    /// WatchdogDriverTests) fails while the runtime's lifecycle queue is wedged, here by an event
    /// callback that does not return, though the pool, the event loops and the runtime's lock are
    /// fine; it passes again once the queue drains. Ticked by hand: a real watchdog in this
    /// process would send to whatever NOTIFY_SOCKET another test has set.
    @Test func probeFailsWhileTheLifecycleQueueIsWedgedAndRecovers() async throws {
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let runtime = try WasmletRuntime(eventHandler: { event in
            if case .created(let snapshot) = event, snapshot.key.id == "wedge" {
                entered.signal()
                release.wait()
            }
        })
        // Event loops and a pool of the probe's own: other suites in this process keep the shared
        // ones busy (see PrivatePool). This test is about the lifecycle queue; the event-loop
        // case is the test above.
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = PrivatePool()
        let idle = ProgressProbe(runtime: runtime, group: loops, pool: pool)
        #expect(idle.isMakingProgress(), "the first tick has nothing to judge")
        #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { idle.isMakingProgress() }, "an idle runtime makes progress")

        let module = try runtime.loadModule(bytes: SandboxModule.bytes)
        _ = try runtime.create(InstanceSpec(key: InstanceKey(namespace: "test", id: "wedge"), moduleDigest: module.digest))
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                entered.wait()
                continuation.resume()
            }
        }
        // A probe whose first heartbeat is launched only now, with the queue wedged: it cannot
        // come back (a heartbeat launched before the wedge might still, late, and make a later
        // tick pass; that one is `idle`'s, not this probe's).
        let probe = ProgressProbe(runtime: runtime, group: loops, pool: pool)
        #expect(probe.isMakingProgress(), "the first tick has nothing to judge")
        for _ in 0..<3 {
            try await Task.sleep(for: .milliseconds(50))
            #expect(!probe.isMakingProgress())
        }
        #expect(!probe.isHealthy)

        release.signal()
        #expect(await eventually(timeout: .seconds(10), every: .milliseconds(50)) { probe.isMakingProgress() }, "progress again once the queue drains")
        #expect(probe.isHealthy)
        try await loops.shutdownGracefully()
    }
}
