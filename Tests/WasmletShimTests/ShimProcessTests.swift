// The built shim binary between a test playing containerd and a fake wasmletd.

import Foundation
import SwiftProtobuf
import Testing
import WasmletAPI
import WasmletTTRPC
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

typealias API = ContainerdTaskAPI

@Suite(.serialized) struct ShimProcessTests {
    /// Starts a shim through `start` and checks what every start must do.
    private func startShim(_ harness: ShimHarness, id: String) async throws -> String {
        let result = try await harness.start(id: id)
        #expect(result.status == 0, "start failed: \(result.stderr)")
        // containerd reads stdout and stderr combined: a success must print the address only.
        #expect(result.stderr.isEmpty)
        // No speed check here (the machine is shared and noisy): runProcess has a hang guard, and
        // start's speed is measured by measureStartLatencyAndIdleMemory and reported in BENCHMARKS.md.
        let address = result.text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(address == "unix://" + (try await harness.expectedSocket(group: harness.sandboxID ?? id)))
        // What a restarted containerd 1.x reads to find this shim again (without it, it deletes
        // the task as dead).
        let written = try? String(contentsOfFile: harness.bundle + "/address", encoding: .utf8)
        #expect(written == address, "the bundle's address file")
        return address
    }

    private func create(_ id: String, _ harness: ShimHarness, rootfs: [Containerd_Types_Mount] = []) -> Containerd_Task_V2_CreateTaskRequest {
        .with {
            $0.id = id
            $0.bundle = harness.bundle
            $0.rootfs = rootfs
        }
    }

    @Test func relaysTaskCallsWithMetadataAndMapsStreamIDs() async throws {
        try await ShimHarness(sandboxID: "sandbox-\(UInt16.random(in: 0...UInt16.max))").run { h in
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            defer { Task { await daemon.stop() } }
            let address = try await startShim(h, id: "task-a")
            // A second task of the same pod gets the same shim.
            #expect(try await startShim(h, id: "task-b") == address)
            #expect(h.shimProcesses().count == 1)

            let a = try await TaskClient.connect(address, namespace: h.namespace)
            let b = try await TaskClient.connect(address, namespace: h.namespace)
            let connect = try await a.call(API.connect, .with { $0.id = "task-a" })
            let shimPID = Int32(connect.shimPid)
            #expect(connect.version == "fake-wasmletd")  // answered by the daemon, not locally
            #expect(h.shimProcesses() == [shimPID])

            #expect(try await a.call(API.create, create("task-a", h)).pid == connect.shimPid)
            #expect(try await b.call(API.create, create("task-b", h)).pid == connect.shimPid)
            #expect(try await a.call(API.start, .with { $0.id = "task-a" }).pid == connect.shimPid)

            // Both connections use stream 1, 3, ...; the shim must keep their answers apart.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for round in 0..<20 {
                    let (client, id) = round % 2 == 0 ? (a, "task-a") : (b, "task-b")
                    group.addTask {
                        let state = try await client.call(API.state, .with { $0.id = id })
                        #expect(state.id == id)
                        #expect(state.status == (id == "task-a" ? .running : .created))
                    }
                }
                try await group.waitForAll()
            }

            let wait = Task { try await a.call(API.wait, .with { $0.id = "task-a" }) }
            // The shim's own Wait after Start, then containerd's, relayed: the exit must come
            // while containerd's Wait is pending in the daemon.
            #expect(await eventually { daemon.recorded("Wait").count == 2 })
            daemon.exit(id: "task-a", status: 7)
            #expect(try await wait.value.exitStatus == 7)

            // The daemon saw the shim's metadata on every call, on odd stream ids only.
            let calls = daemon.calls.withLock { $0 }
            #expect(calls.count >= 26)
            for call in calls {
                #expect(call.streamID % 2 == 1)
                #expect(call.metadata["wasmlet-shim-pid"] == String(shimPID))
                #expect(call.metadata["wasmlet-shim-namespace"] == h.namespace)
                #expect(call.metadata["wasmlet-shim-group"] == h.sandboxID)
                #expect(call.metadata["wasmlet-shim-ttrpc-address"] == h.ttrpcAddress)
                #expect(call.metadata[TTRPCMetadata.containerdNamespaceKey] == h.namespace)
            }
            #expect(Set(calls.map(\.streamID)).count == calls.count)
            // containerd's Wait plus the shim's own Wait after Start.
            #expect(daemon.recorded("Wait").count == 2)

            // Delete both; Shutdown with no tasks left ends the shim and removes its socket.
            #expect(try await a.call(API.delete, .with { $0.id = "task-a" }).exitStatus == 7)
            _ = try await b.call(API.delete, .with { $0.id = "task-b" })
            _ = try await a.call(API.shutdown, .with { $0.id = "task-a" })
            #expect(await eventually { !processIsAlive(shimPID) })
            #expect(!FileManager.default.fileExists(atPath: String(address.dropFirst("unix://".count))))
            await a.close()
            await b.close()
        }
    }

    @Test func shutdownWithTasksLeftKeepsServing() async throws {
        try await ShimHarness().run { h in
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            defer { Task { await daemon.stop() } }
            let address = try await startShim(h, id: "t1")
            let client = try await TaskClient.connect(address, namespace: h.namespace)
            _ = try await client.call(API.create, create("t1", h))
            _ = try await client.call(API.shutdown, .with { $0.id = "t1" })
            try await Task.sleep(for: .milliseconds(200))
            #expect(h.shimProcesses().count == 1)
            // A new connection still works (containerd reconnects).
            let again = try await TaskClient.connect(address, namespace: h.namespace)
            #expect(try await again.call(API.state, .with { $0.id = "t1" }).status == .created)
            // Shutdown{now} ends it regardless.
            _ = try await again.call(API.shutdown, .with { $0.now = true })
            #expect(await eventually { h.shimProcesses().isEmpty })
        }
    }

    @Test func daemonLossAnswersPendingWaitAndPublishesExit() async throws {
        try await ShimHarness().run { h in
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            let events = try await FakeContainerdEvents.start(socketPath: h.eventsSocket)
            defer { Task { await events.stop() } }
            let address = try await startShim(h, id: "t1")
            let client = try await TaskClient.connect(address, namespace: h.namespace)
            let shimPID = try await client.call(API.connect, .with { $0.id = "t1" }).shimPid
            _ = try await client.call(API.create, create("t1", h))
            _ = try await client.call(API.start, .with { $0.id = "t1" })
            let wait = Task { try await client.call(API.wait, .with { $0.id = "t1" }) }
            let stats = Task { try await client.call(API.stats, .with { $0.id = "t1" }) }
            #expect(await eventually { daemon.recorded("Wait").count == 2 && daemon.recorded("Stats").count == 1 })

            await daemon.stop()  // wasmletd dies with the guest inside

            let exit = try await wait.value
            #expect(exit.exitStatus == 137)
            #expect(abs(exit.exitedAt.seconds - Int64(Date().timeIntervalSince1970)) < 30)
            // Any other call in flight gets UNAVAILABLE with an explanation.
            await #expect {
                _ = try await stats.value
            } throws: { error in
                let error = error as? TTRPCError
                return error?.code == .unavailable
                    && error?.message == "wasmletd connection lost during Stats; the task is reported exited (137)"
            }
            // containerd hears about the exit from the shim.
            #expect(await eventually { events.events.withLock { $0.count } == 1 })
            let event = try #require(events.events.withLock { $0.first })
            #expect(event.namespaceMetadata == h.namespace)
            #expect(event.request.envelope.topic == "/tasks/exit")
            #expect(event.request.envelope.namespace == h.namespace)
            #expect(event.request.envelope.event.typeURL == "containerd.events.TaskExit")
            let taskExit = try Containerd_Events_TaskExit(serializedBytes: event.request.envelope.event.value)
            #expect(taskExit.containerID == "t1" && taskExit.id == "t1")
            #expect(taskExit.pid == shimPID && taskExit.exitStatus == 137)
            #expect(taskExit.exitedAt == exit.exitedAt)

            // Later calls are answered locally, consistently with that exit.
            let state = try await client.call(API.state, .with { $0.id = "t1" })
            #expect(state.status == .stopped && state.exitStatus == 137 && state.pid == shimPID)
            #expect(state.bundle == h.bundle)
            #expect(try await client.call(API.wait, .with { $0.id = "t1" }).exitStatus == 137)
            _ = try await client.call(API.kill, .with { $0.id = "t1"; $0.signal = 9 })
            #expect(try await client.call(API.pids, .with { $0.id = "t1" }).processes.map(\.pid) == [shimPID])
            let connect = try await client.call(API.connect, .with { $0.id = "t1" })
            #expect(connect.version.hasPrefix("wasmlet-shim/") && connect.shimPid == shimPID)
            await #expect {
                _ = try await client.call(API.create, create("t2", h))
            } throws: { error in
                let error = error as? TTRPCError
                return error?.code == .unavailable
                    && error?.message.contains("wasmletd is not running: cannot connect to \(h.daemonSocket)") == true
            }
            let deleted = try await client.call(API.delete, .with { $0.id = "t1" })
            #expect(deleted.exitStatus == 137 && deleted.pid == shimPID && deleted.exitedAt == exit.exitedAt)
            // Only one event: the loss was reported once.
            #expect(events.events.withLock { $0.count } == 1)
            _ = try await client.call(API.shutdown, .with { $0.id = "t1" })
            #expect(await eventually { h.shimProcesses().isEmpty })
        }
    }

    /// Known gap 4 of the faults issue: publishing `/tasks/exit` after wasmletd is lost ran on the
    /// shim's loop, so a containerd slow to answer the Forward held every other call for up to
    /// the publication's timeout. Here containerd receives the Forward and does not answer it
    /// until the shim has answered a State call; a shim whose loop waited for that answer could
    /// answer State only after giving the publication up, and would then never log it published.
    @Test func aSlowContainerdDoesNotHoldTheShimWhileItPublishesAnExit() async throws {
        try await ShimHarness().run { h in
            // The serving shim logs to the bundle's `log` (a FIFO under containerd; a file here).
            let log = h.bundle + "/log"
            #expect(FileManager.default.createFile(atPath: log, contents: nil))
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            let events = try await FakeContainerdEvents.start(socketPath: h.eventsSocket, holdingAnswers: true)
            defer { Task { await events.stop() } }
            let address = try await startShim(h, id: "t1")
            let client = try await TaskClient.connect(address, namespace: h.namespace)
            _ = try await client.call(API.create, create("t1", h))
            _ = try await client.call(API.start, .with { $0.id = "t1" })

            await daemon.stop()
            // containerd has the Forward and holds its answer.
            #expect(await eventually { events.events.withLock { $0.count } == 1 })
            let state = try await client.call(API.state, .with { $0.id = "t1" })
            #expect(state.status == .stopped && state.exitStatus == 137)
            let logged = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            #expect(!logged().contains("publishing /tasks/exit"), "\(logged())")
            events.releaseAnswers()
            #expect(await eventually { logged().contains("published /tasks/exit for t1 (137)") }, "\(logged())")
            #expect(!logged().contains("error: publishing"), "\(logged())")
            _ = try await client.call(API.delete, .with { $0.id = "t1" })
            _ = try await client.call(API.shutdown, .with { $0.id = "t1" })
            #expect(await eventually { h.shimProcesses().isEmpty })
        }
    }

    @Test func restartedDaemonIsUsedAgain() async throws {
        try await ShimHarness().run { h in
            let address = try await startShim(h, id: "t1")
            let client = try await TaskClient.connect(address, namespace: h.namespace)
            #expect(try await client.call(API.connect, .with { $0.id = "t1" }).version.hasPrefix("wasmlet-shim/"))
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            defer { Task { await daemon.stop() } }
            // The next request reconnects.
            #expect(try await client.call(API.connect, .with { $0.id = "t1" }).version == "fake-wasmletd")
            _ = try await client.call(API.shutdown, .with { $0.id = "t1" })
            #expect(await eventually { h.shimProcesses().isEmpty })
        }
    }

    @Test func withoutDaemonCreateFailsClearlyAndShutdownExits() async throws {
        try await ShimHarness().run { h in
            let address = try await startShim(h, id: "t1")
            let client = try await TaskClient.connect(address, namespace: h.namespace)
            await #expect {
                _ = try await client.call(API.create, create("t1", h))
            } throws: { error in
                let error = error as? TTRPCError
                return error?.code == .unavailable
                    && error?.message == "wasmletd is not running: cannot connect to \(h.daemonSocket): No such file or directory"
            }
            await #expect {
                _ = try await client.call(API.state, .with { $0.id = "t1" })
            } throws: { ($0 as? TTRPCError)?.code == .notFound }
            // Another service entirely is not the shim's business.
            await #expect {
                _ = try await client.client.call(service: "wasmlet.v1.Runtime", method: "Version", payload: [])
            } throws: { ($0 as? TTRPCError)?.code == .unavailable }
            let shimPID = try await client.call(API.connect, .with { $0.id = "t1" }).shimPid
            #expect(processIsAlive(Int32(shimPID)))
            _ = try await client.call(API.shutdown, .with { $0.id = "t1" })
            #expect(await eventually { !processIsAlive(Int32(shimPID)) })
            #expect(!FileManager.default.fileExists(atPath: try await h.expectedSocket(group: "t1")))
        }
    }

    @Test func garbageClosesOnlyThatConnection() async throws {
        try await ShimHarness().run { h in
            let address = try await startShim(h, id: "t1")
            let path = String(address.dropFirst("unix://".count))
            let good = try await TaskClient.connect(address, namespace: h.namespace)
            _ = try await good.call(API.connect, .with { $0.id = "t1" })

            // A request frame whose payload is not a ttrpc.Request, an oversize length, a
            // response frame: each kills its own connection only.
            let garbage: [[UInt8]] = [
                [0, 0, 0, 3, 0, 0, 0, 1, 1, 0, 0x0A, 0x05, 0x41],
                [0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 1, 0],
                [0, 0, 0, 0, 0, 0, 0, 1, 2, 0],
            ]
            for bytes in garbage {
                let fd = try rawConnect(path)
                defer { close(fd) }
                #expect(write(fd, bytes, bytes.count) == bytes.count)
                #expect(readUntilEOF(fd, timeout: .seconds(5)), "connection was not closed after \(bytes)")
            }
            // A request split into single bytes still works.
            let fd = try rawConnect(path)
            defer { close(fd) }
            var request = Ttrpc_Request()
            request.service = API.serviceNameV2
            request.method = "Connect"
            let payload: [UInt8] = try request.serializedBytes()
            let frame: [UInt8] = [0, 0, 0, UInt8(payload.count), 0, 0, 0, 9, 1, 0] + payload
            for byte in frame {
                var one = byte
                #expect(write(fd, &one, 1) == 1)
            }
            let answer = try readFrame(fd)
            #expect(answer.streamID == 9)
            #expect(answer.type == 2)

            _ = try await good.call(API.connect, .with { $0.id = "t1" })
            #expect(h.shimProcesses().count == 1)
        }
    }

    /// Out of descriptors, accept fails and the connection stays pending, so the listener stays
    /// readable: without a backoff the loop would spin on it. Each failure pauses accepting
    /// for twice as long as the last (10, 20, 40 ms, ...), and connections are taken again once
    /// descriptors are free.
    @Test func acceptFailuresBackOffAndRecoverOnceDescriptorsAreFree() async throws {
        try await ShimHarness().run { h in
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            defer { Task { await daemon.stop() } }
            // The shim's stderr goes to the bundle's `log` when it can be opened; a plain file here.
            let logPath = h.bundle + "/log"
            #expect(FileManager.default.createFile(atPath: logPath, contents: nil))
            let address = try await startShim(h, id: "t1")
            let path = String(address.dropFirst("unix://".count))
            let good = try await TaskClient.connect(address, namespace: h.namespace)
            let shimPID = Int32(try await good.call(API.connect, .with { $0.id = "t1" }).shimPid)

            // Room for two more descriptors, then six connections: four stay pending.
            let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(shimPID)/fd").count
            let limit = try await runProcess(
                "/usr/bin/prlimit", ["--pid", "\(shimPID)", "--nofile=\(open + 2):\(open + 2)"], environment: [:], directory: "/")
            #expect(limit.status == 0, "prlimit: \(limit.stderr)")
            var extra: [Int32] = []
            defer { for fd in extra { close(fd) } }
            for _ in 0..<6 { extra.append(try rawConnect(path)) }

            func failures() -> [String] {
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                return text.split(separator: "\n").filter { $0.contains("accept on \(path) failed") }.map(String.init)
            }
            #expect(await eventually(timeout: .seconds(30), every: .milliseconds(10)) { failures().count >= 3 }, "log: \(failures())")
            let first = failures().prefix(3)
            #expect(first.allSatisfy { $0.contains("Too many open files") }, "\(first)")
            #expect(first.enumerated().allSatisfy { $0.element.hasSuffix("not accepting for \(10 << $0.offset) ms") }, "the pause doubles: \(first)")

            // Free the descriptors: the connections that did get in are closed, the pending
            // ones are taken once the pause ends, and a new client is served.
            for fd in extra { close(fd) }
            extra = []
            #expect(await eventually(timeout: .seconds(30), every: .milliseconds(20)) {
                guard let client = try? await TaskClient.connect(address, namespace: h.namespace) else { return false }
                let answered = (try? await client.call(API.connect, .with { $0.id = "t1" })) != nil
                await client.close()
                return answered
            })
            #expect(try await good.call(API.connect, .with { $0.id = "t1" }).shimPid == UInt32(shimPID))
            await good.close()
        }
    }

    @Test func deleteWithoutDaemonPrintsExit137AndRemovesStaleSocket() async throws {
        try await ShimHarness().run { h in
            // A socket file nobody listens on, where the group's shim would be.
            try FileManager.default.createDirectory(atPath: h.socketDirectory, withIntermediateDirectories: true)
            let stale = try await h.expectedSocket(group: "t1")
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in stale.utf8.enumerated() { raw[index] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            close(fd)
            #expect(bound == 0 && FileManager.default.fileExists(atPath: stale))

            let result = try await h.delete(id: "t1")
            #expect(result.status == 0)  // a hung delete is caught by runProcess's hang guard
            let response = try Containerd_Task_V2_DeleteResponse(serializedBytes: result.stdout)
            #expect(response.exitStatus == 137)
            #expect(abs(response.exitedAt.seconds - Int64(Date().timeIntervalSince1970)) < 30)
            #expect(result.stderr.contains(h.daemonSocket))
            #expect(!FileManager.default.fileExists(atPath: stale))
        }
    }

    @Test func deleteAsksTheDaemonToCleanUp() async throws {
        try await ShimHarness(sandboxID: "pod-1").run { h in
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            defer { Task { await daemon.stop() } }
            let result = try await h.delete(id: "gone")
            #expect(result.status == 0)
            let response = try Containerd_Task_V2_DeleteResponse(serializedBytes: result.stdout)
            #expect(response.exitStatus == daemon.unknownDeleteStatus)
            let call = try #require(daemon.recorded("Delete").first)
            #expect(call.metadata["wasmlet-shim-cleanup"] == "1")
            #expect(call.metadata["wasmlet-shim-group"] == "pod-1")
            #expect(call.metadata["wasmlet-shim-namespace"] == h.namespace)
            #expect(call.metadata[TTRPCMetadata.containerdNamespaceKey] == h.namespace)
            #expect(try Containerd_Task_V2_DeleteRequest(serializedBytes: call.payload).id == "gone")
        }
    }

    /// A containerd connection that sends requests and never reads the answers: once its
    /// answers waiting to be written pass the shim's 1 MiB bound, the shim stops reading it, so
    /// the sender stalls after a few MiB instead of growing the shim without limit; another
    /// connection is served all the while, and the shim lives on when the flooder leaves.
    @Test func aConnectionThatNeverReadsIsStoppedAtTheQueueBound() async throws {
        try await ShimHarness().run { h in
            let address = try await startShim(h, id: "t1")
            let path = String(address.dropFirst("unix://".count))
            // Closed once, below or by the defer: a second close would close whatever descriptor
            // the number went to meanwhile, in another test running beside this one.
            var flood = try rawConnect(path)
            defer { if flood >= 0 { close(flood) } }
            _ = fcntl(flood, F_SETFL, fcntl(flood, F_GETFL) | O_NONBLOCK)
            var request = Ttrpc_Request()
            request.service = API.serviceNameV2
            request.method = "Connect"
            request.payload = try Containerd_Task_V2_ConnectRequest.with { $0.id = "t1" }.serializedBytes()
            let payload: [UInt8] = try request.serializedBytes()
            // Far more than the bound, kernel buffers and the shim's read buffer together: an
            // unbounded shim would read all of it.
            let limit = 64 << 20
            var sent = 0
            var stream: UInt32 = 1
            var pending: [UInt8] = []
            while sent < limit {
                if pending.isEmpty {
                    pending = [0, 0, 0, UInt8(payload.count)] + withUnsafeBytes(of: stream.bigEndian) { Array($0) } + [1, 0] + payload
                    stream &+= 2
                }
                let written = write(flood, pending, pending.count)
                if written > 0 {
                    sent += written
                    pending.removeFirst(written)
                    continue
                }
                guard written < 0, errno == EAGAIN else { break }
                // The shim has stopped reading when no room comes within 2 s (it reads in
                // microseconds while it reads at all).
                var entry = pollfd(fd: flood, events: Int16(POLLOUT), revents: 0)
                if poll(&entry, 1, 2000) == 0 { break }
            }
            print("queue bound: the shim stopped reading a non-reading connection after \(sent) bytes of requests")
            #expect(sent < 16 << 20, "the shim read \(sent) bytes from a connection that never read its answers")
            // Another connection is served while the flooder is stalled (a hang fails the
            // call's 10 s timeout).
            let other = try await TaskClient.connect(address, namespace: h.namespace)
            _ = try await other.call(API.connect, .with { $0.id = "t1" })
            close(flood)
            flood = -1
            _ = try await other.call(API.connect, .with { $0.id = "t1" })
            #expect(h.shimProcesses().count == 1, "the shim died")
            await other.close()
        }
    }

    @Test func startFailuresAreExplained() async throws {
        try await ShimHarness().run { h in
            var result = try await runProcess(
                shimBinaryPath, ["-id", "x", "start"], environment: h.environment.merging(["NAMESPACE": ""]) { $1 },
                directory: h.bundle)
            #expect(result.status == 1)
            #expect(result.stderr == "containerd-shim-wasmlet-v1 start: -namespace is required\n")
            result = try await h.start(id: "x", environment: ["WASMLET_SHIM_SOCKET_DIR": "/proc/no-such-dir"])
            #expect(result.status == 1)
            #expect(result.stderr.hasPrefix("containerd-shim-wasmlet-v1 start: cannot create the shim socket directory /proc/no-such-dir: "))
            #expect(result.stdout.isEmpty)
        }
    }

    @Test func sigtermExitsCleanly() async throws {
        try await ShimHarness().run { h in
            let address = try await startShim(h, id: "t1")
            let pids = h.shimProcesses()
            #expect(pids.count == 1)
            for pid in pids { kill(pid, SIGTERM) }
            #expect(await eventually { h.shimProcesses().isEmpty })
            #expect(!FileManager.default.fileExists(atPath: String(address.dropFirst("unix://".count))))
        }
    }

    @Test(.enabled(if: getuid() == 0, "mounting needs root"))
    func createMountsRootfsAndDeleteUnmountsIt() async throws {
        try await ShimHarness().run { h in
            let daemon = try await FakeTaskDaemon.start(socketPath: h.daemonSocket)
            defer { Task { await daemon.stop() } }
            let source = h.directory + "/snapshot"
            try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
            try "module".write(toFile: source + "/app.wasm", atomically: true, encoding: .utf8)
            let rootfs = h.bundle + "/rootfs"
            let bind = Containerd_Types_Mount.with {
                $0.type = "bind"
                $0.source = source
                $0.options = ["rbind", "ro"]
            }
            let address = try await startShim(h, id: "t1")
            let client = try await TaskClient.connect(address, namespace: h.namespace)

            _ = try await client.call(API.create, create("t1", h, rootfs: [bind]))
            #expect(isMountPoint(rootfs))
            #expect(FileManager.default.fileExists(atPath: rootfs + "/app.wasm"))
            #expect(!FileManager.default.createFile(atPath: rootfs + "/new", contents: Data()))  // read-only
            #expect(mountOptions(rootfs)?.contains("ro") == true)
            _ = try await client.call(API.delete, .with { $0.id = "t1" })
            #expect(!isMountPoint(rootfs))

            // The daemon refuses the Create: the mount is undone.
            await #expect(throws: TTRPCError.self) {
                _ = try await client.call(API.create, create("refuse-1", h, rootfs: [bind]))
            }
            #expect(!isMountPoint(rootfs))

            // A mount that fails is answered by the shim with the reason, and never forwarded.
            let overlay = Containerd_Types_Mount.with {
                $0.type = "overlay"
                $0.source = "overlay"
                $0.options = ["lowerdir=\(h.directory)/missing-lower", "upperdir=\(h.directory)/u", "workdir=\(h.directory)/w"]
            }
            let before = daemon.recorded("Create").count
            await #expect {
                _ = try await client.call(API.create, create("t2", h, rootfs: [overlay]))
            } throws: { error in
                let error = error as? TTRPCError
                return error?.code == .internal
                    && error?.message.hasPrefix("mount overlay on \(rootfs): ") == true
            }
            #expect(daemon.recorded("Create").count == before)
            #expect(!isMountPoint(rootfs))
        }
    }

    /// Not a test of behaviour: prints `start` latency and the idle RSS of a serving shim.
    /// Run with WASMLET_SHIM_MEASURE=/path/to/release/containerd-shim-wasmlet-v1.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["WASMLET_SHIM_MEASURE"] != nil))
    func measureStartLatencyAndIdleMemory() async throws {
        let binary = ProcessInfo.processInfo.environment["WASMLET_SHIM_MEASURE"] ?? shimBinaryPath
        try await ShimHarness().run { h in
            var latencies = [Double]()
            for round in 0..<20 {
                let result = try await runProcess(
                    binary, h.flags(id: "m\(round)") + ["start"], environment: h.environment, directory: h.bundle)
                #expect(result.status == 0)
                latencies.append(Double(result.elapsed.components.attoseconds) / 1e15 + Double(result.elapsed.components.seconds) * 1000)
            }
            latencies.sort()
            let median = (latencies[9] + latencies[10]) / 2
            print("start latency (process launch to exit, 20 runs): median \(median) ms, min \(latencies[0]) ms, max \(latencies[19]) ms")
            // Let them settle idle, then read their memory.
            try await Task.sleep(for: .milliseconds(500))
            for pid in h.shimProcesses().prefix(3) {
                let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                let rollup = (try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)) ?? ""
                let lines = (status + rollup).split(separator: "\n").filter {
                    $0.hasPrefix("VmRSS") || $0.hasPrefix("Pss:") || $0.hasPrefix("Private_")
                        || $0.hasPrefix("Shared_") || $0.hasPrefix("Rss:")
                }
                print("shim \(pid) idle: " + lines.map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }.joined(separator: "; "))
            }
        }
    }
}

// MARK: Raw socket helpers

func rawConnect(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
    }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard result == 0 else {
        close(fd)
        throw TTRPCError.unavailable("connect \(path): errno \(errno)")
    }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// True when the peer closes the connection (EOF) before `timeout`.
func readUntilEOF(_ fd: Int32, timeout: Duration) -> Bool {
    var buffer = [UInt8](repeating: 0, count: 256)
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let count = read(fd, &buffer, buffer.count)
        if count == 0 { return true }
        if count < 0 && errno == ECONNRESET { return true }
        if count < 0 && errno != EINTR && errno != EAGAIN { return false }
    }
    return false
}

func readFrame(_ fd: Int32) throws -> (streamID: UInt32, type: UInt8, payload: [UInt8]) {
    func readExactly(_ count: Int) throws -> [UInt8] {
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: count)
        while out.count < count {
            let got = read(fd, &buffer, count - out.count)
            guard got > 0 else { throw TTRPCError.unavailable("read failed") }
            out += buffer[0..<got]
        }
        return out
    }
    let header = try readExactly(10)
    let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
    let stream = UInt32(header[4]) << 24 | UInt32(header[5]) << 16 | UInt32(header[6]) << 8 | UInt32(header[7])
    return (stream, header[8], try readExactly(length))
}

// MARK: Mount table

func mountInfoEntry(_ path: String) -> [String]? {
    guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
    // Field 5 is the mount point, field 6 its options; the last matching line is the top mount.
    return text.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }.last { $0.count > 5 && $0[4] == path }
}

func isMountPoint(_ path: String) -> Bool { mountInfoEntry(path) != nil }

func mountOptions(_ path: String) -> [String]? {
    mountInfoEntry(path).map { $0[5].split(separator: ",").map(String.init) }
}
