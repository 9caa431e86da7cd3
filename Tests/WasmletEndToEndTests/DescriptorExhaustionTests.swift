import Foundation
import Glibc
import Testing
import WasmletAPI
import WasmletTTRPC
import WasmletTestSupport

extension DaemonEndToEndTests {
    /// The real wasmletd out of descriptors: its RLIMIT_NOFILE lowered (prlimit) to what it holds
    /// plus a few, then taken up by connections the test opens.
    @Suite struct DescriptorExhaustion {
        static func openDescriptors(_ pid: pid_t) -> Int {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
        }

        /// With every descriptor in use: a Create that must open a file fails RESOURCE_EXHAUSTED
        /// and names the cause (it was PERMISSION_DENIED, "NSCocoaErrorDomain error 256"), the
        /// connections already open keep being served, new ones wait in the backlog while the
        /// accept loop backs off and logs it (it spun: a whole core; see BENCHMARKS.md "Faults"),
        /// and once descriptors are free
        /// again the waiting connections are served, work is taken, and the daemon's descriptors
        /// go back to where they were.
        @Test(.enabled(if: access("/usr/bin/prlimit", X_OK) == 0))
        func outOfDescriptorsTheDaemonFailsClearlyAndRecovers() async throws {
            let directory = try TemporaryDirectory()
            let daemon = try await DaemonProcess(directory: directory)
            defer { daemon.killAndReap() }
            let client = try await daemon.client()
            _ = try await client.create("warm", module: example("hello"))
            _ = try await client.start("warm")
            #expect(try await client.wait("warm").code == 0)
            // A service of the HTTP trigger: its listener has an accept loop of its own.
            var service = Wasmlet_V1_CreateRequest()
            service.namespace = "test"
            service.id = "svc"
            service.module = .path(example("wagi_hello"))
            service.args = ["svc"]
            service.httpTrigger = Wasmlet_V1_HTTPTrigger()
            service.listeners = [Wasmlet_V1_Listener.with { $0.address = "127.0.0.1" }]
            let port = UInt16(try await client.call(WasmletRuntimeAPI.create, service).instance.listeners[0].boundPort)
            _ = try await client.start("svc")
            #expect(try loopbackHTTPGet(port: port).hasPrefix("HTTP/1.0 200"))
            let baseline = Self.openDescriptors(daemon.pid)
            let limit = baseline + 6
            let lowered = try await ChildProcess.run("/usr/bin/prlimit", ["--pid", "\(daemon.pid)", "--nofile=\(limit):\(limit)"])
            try #require(lowered.termination.status == 0, "prlimit: \(lowered.output)")

            // Connections until the daemon holds every descriptor it may; the rest queue.
            var extra: [RawConnection] = []
            for _ in 0..<16 { extra.append(try RawConnection(daemon.socketPath)) }
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(20)) { Self.openDescriptors(daemon.pid) >= limit },
                    "the daemon holds \(Self.openDescriptors(daemon.pid)) of \(limit)")

            // One waits on the listener handoff socket too (its own accept loop).
            let handoff = try RawConnection.connectFD(daemon.socketPath + ".listeners", type: SOCK_SEQPACKET)
            defer { close(handoff) }
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(20)) {
                daemon.log.contains("listener handoff socket: accept failed, backing off")
            })
            // A request waits on the service's listener too; its accept fails and backs off.
            let waitingRequest = try connectLoopback(port: port)
            defer { close(waitingRequest) }
            let get = Array("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n".utf8)
            #expect(send(waitingRequest, get, get.count, Int32(MSG_NOSIGNAL)) == get.count)
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(20)) {
                daemon.log.contains("the HTTP trigger cannot accept a connection; retrying in 1 s")
            })
            // A module not read before: the daemon must open it, and cannot.
            let refused = await statusCode { _ = try await client.create("no-descriptors", module: example("cat")) }
            #expect(refused?.0 == .resourceExhausted, "\(String(describing: refused))")
            #expect(refused?.1.contains("Too many open files") == true, "\(String(describing: refused))")
            // The open connection is still served.
            #expect(try await client.inspect("warm").exit.code == 0)
            #expect(daemon.isRunning)

            // Descriptors back: the queued connections are accepted (the backoff ends), and work is taken.
            extra.removeAll()
            let queued = try RawConnection(daemon.socketPath)
            #expect(queued.write(try versionRequestFrame(streamID: 1)))
            let answer = queued.readFrame(timeoutMilliseconds: 30_000)
            guard case .frame(_, _, let payload) = answer else {
                Issue.record("a connection made after the descriptors came back was not served: \(answer)")
                return
            }
            #expect(try decodeResponse(payload).code == 0)
            // The request that waited on the service's listener is answered.
            var served: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(waitingRequest, &buffer, buffer.count, 0)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                served += buffer[0..<count]
            }
            let text = String(decoding: served, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.0 200"), "\(text)")
            _ = try await client.create("after", module: example("cat"), args: ["cat"])
            _ = try await client.start("after")
            #expect(try await client.wait("after").code == 0)
            await client.close()
            withExtendedLifetime(queued) {}
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(20)) { Self.openDescriptors(daemon.pid) <= baseline + 2 },
                    "the daemon holds \(Self.openDescriptors(daemon.pid)) descriptors, \(baseline) before")
            #expect(daemon.log.contains("cannot accept an API connection; retrying in 1 s"), "the log does not say accept failed")
            await daemon.stop()
        }
    }
}
