import Foundation
import Glibc
import Testing
import WasmletTTRPC
import WasmletTestSupport

extension DaemonEndToEndTests {
    /// The state directory's file system fills up (a 16 MiB tmpfs of the test's own, filled to
    /// the last byte by the test), under the real wasmletd. It is large enough that, once the
    /// test's filler is gone, a restart has room for its recovery: that writes a new journal
    /// generation, allocated by the megabyte, before it deletes the old ones. On a 4 MiB tmpfs
    /// the restart sometimes had not (1 of 8 runs): wasmletd then refuses to start, "cannot
    /// write journal ...: No space left on device", and loses nothing.
    @Suite struct FullDisk {
        /// Create fails with an error that says the disk is full; the daemon keeps serving; what
        /// was durable before is intact; once space is back it takes work again; and a daemon
        /// restarted on that directory recovers every record, the ones from before the full disk
        /// and after it.
        @Test(.enabled(if: getuid() == 0 && access("/bin/mount", X_OK) == 0))
        func aFullStateDiskFailsCreatesClearlyAndLosesNothing() async throws {
            let directory = try TemporaryDirectory()
            let state = directory.path + "/state"
            #expect(mkdir(state, 0o700) == 0)
            let mounted = try await ChildProcess.run("/bin/mount", ["-t", "tmpfs", "-o", "size=16m,mode=0700", "wasmlet-full-disk-test", state])
            try #require(mounted.termination.status == 0, "mount: \(mounted.output)")
            defer { umount2(state, Int32(MNT_DETACH)) }

            let first = try await DaemonProcess(directory: directory, stateDirectory: state)
            let client = try await first.client()
            _ = try await client.create("before-done", module: example("hello"), labels: ["phase": "before"])
            _ = try await client.start("before-done")
            #expect(try await client.wait("before-done").code == 0)
            _ = try await client.create("before-created", module: example("hello"), labels: ["phase": "before"])

            // Fill the file system: a file grown until the kernel says ENOSPC.
            let filler = state + "/filler"
            let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            try #require(fd >= 0)
            let block = [UInt8](repeating: 0xAB, count: 4096)
            var fillError: Int32 = 0
            for _ in 0..<(16_384) {  // 64 MiB at most: a tmpfs of 16 MiB fills long before.
                if write(fd, block, block.count) < 0 { fillError = errno; break }
            }
            // The last bytes: a page may be short.
            while fillError == 0 || fillError == EINTR { if write(fd, block, 1) < 0 { fillError = errno } }
            close(fd)
            try #require(fillError == ENOSPC, "filling the tmpfs ended with \(String(cString: strerror(fillError)))")

            // The journal is allocated 1 MiB ahead, so Creates go on being durable until that
            // is used up (each carries a 2 KiB label to get there sooner); the first that cannot
            // be made durable fails and says why, and leaves nothing behind.
            var accepted: [String] = []
            var refused: (TTRPCStatusCode, String)?
            let bulk = String(repeating: "x", count: 2048)
            for index in 0..<2000 {
                let id = "during-\(index)"
                refused = await statusCode { _ = try await client.create(id, module: example("hello"), labels: ["bulk": bulk]) }
                if let refused {
                    #expect(await statusCode { _ = try await client.inspect(id) }?.0 == .notFound, "a refused Create left \(id): \(refused)")
                    break
                }
                accepted.append(id)
            }
            print("full disk: \(accepted.count) Creates durable after the fill, then \(String(describing: refused))")
            #expect(refused != nil, "2,000 Creates succeeded on a full disk")
            #expect(refused?.0 == .resourceExhausted, "\(String(describing: refused))")
            #expect(refused?.1.contains("No space left on device") == true, "\(String(describing: refused))")
            // The daemon is still serving, and what was durable is still there.
            #expect(first.isRunning)
            #expect(try await client.inspect("before-done").exit.code == 0)
            let beforeAndDuring = (["before-created", "before-done"] + accepted).sorted()
            #expect(try await client.list(namespace: "test").map(\.id) == beforeAndDuring)

            // Space is back: work is taken again.
            #expect(unlink(filler) == 0)
            _ = try await client.create("after", module: example("hello"), labels: ["phase": "after"])
            _ = try await client.start("after")
            #expect(try await client.wait("after").code == 0)
            await client.close()
            await first.stop()
            #expect(!first.log.contains("Fatal error"))

            let second = try await DaemonProcess(directory: directory, stateDirectory: state, logName: "second.log")
            defer { second.killAndReap() }
            let again = try await second.client()
            #expect(try await again.list(namespace: "test").map(\.id) == (beforeAndDuring + ["after"]).sorted())
            #expect(try await again.inspect("before-done").exit.code == 0)
            #expect(try await again.inspect("after").exit.code == 0)
            #expect(try await again.list(labels: ["phase": "before"]).count == 2)
            await again.close()
            await second.stop()
        }
    }
}
