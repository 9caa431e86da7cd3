import Foundation
import Glibc
import Testing
import WasmletAPI
import WasmletTTRPC
import WasmletTestSupport

extension DaemonEndToEndTests {
    /// The durability contract with group commit, against the real daemon: a request that
    /// changed an instance has its record on disk when it returns, however many share a flush.
    @Suite struct GroupCommit {
        /// 400 creates from 8 connections at once, and create/start/wait/delete cycles beside
        /// them; kill -9 the moment the last one returns. The restarted daemon has every created
        /// instance (reported daemon_restarted) and none of the deleted ones.
        @Test func concurrentCreatesAreAllDurableWhenTheyReturn() async throws {
            let directory = try TemporaryDirectory()
            let state = directory.path + "/state"
            let first = try await DaemonProcess(
                directory: directory, stateDirectory: state, arguments: ["--default-memory", "1MiB", "--log-level", "info"])
            let path = first.socketPath
            let hello = example("hello")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        let client = try await RuntimeClient(socketPath: path)
                        try await withThrowingTaskGroup(of: Void.self) { calls in
                            for index in 0..<50 {
                                calls.addTask { _ = try await client.create("kept-\(worker)-\(index)", module: hello) }
                            }
                            try await calls.waitForAll()
                        }
                        await client.close()
                    }
                }
                for worker in 0..<2 {
                    group.addTask {
                        let client = try await RuntimeClient(socketPath: path)
                        for index in 0..<40 {
                            let id = "gone-\(worker)-\(index)"
                            _ = try await client.create(id, module: hello)
                            _ = try await client.start(id)
                            #expect(try await client.wait(id).code == 0)
                            _ = try await client.delete(id)
                        }
                        await client.close()
                    }
                }
                try await group.waitForAll()
            }
            first.signal(SIGKILL)
            #expect(await first.waitForExit()?.reason == .uncaughtSignal)

            let second = try await DaemonProcess(
                directory: directory, stateDirectory: state, arguments: ["--default-memory", "1MiB"], logName: "second.log")
            defer { second.killAndReap() }
            let client = try await second.client()
            let listed = try await client.list(namespace: "test")
            let expected = Set((0..<8).flatMap { worker in (0..<50).map { "kept-\(worker)-\($0)" } })
            #expect(Set(listed.map(\.id)) == expected)
            #expect(listed.allSatisfy { $0.state == .exited && $0.exit.reason == .daemonRestarted })
            await client.close()
        }

        /// A journal that cannot be written (chattr +i: EPERM even for root) fails the Create
        /// with INTERNAL and undoes it; once the disk is writable again creates work, and a
        /// restart has exactly the instances whose creation succeeded.
        @Test func aJournalWriteFailureFailsTheRequest() async throws {
            let directory = try TemporaryDirectory()
            let state = directory.path + "/state"
            let first = try await DaemonProcess(directory: directory, stateDirectory: state)
            let client = try await first.client()
            _ = try await client.create("before", module: example("hello"))
            let journals = try FileManager.default.contentsOfDirectory(atPath: state).filter { $0.hasPrefix("journal-") }
            #expect(journals.count == 1)
            let journal = state + "/" + (journals.first ?? "")
            guard chattr("+i", journal), chattr("+i", state) else {
                _ = chattr("-i", journal)
                print("chattr +i is not supported here; skipping")
                await first.stop()
                return
            }
            defer {
                _ = chattr("-i", state)
                _ = chattr("-i", journal)
            }
            let refused = await statusCode { _ = try await client.create("during", module: example("hello")) }
            #expect(refused?.0 == .internal)
            #expect(refused?.1.contains("cannot record the instance durably") == true)
            #expect(await statusCode { _ = try await client.inspect("during") }?.0 == .notFound)
            // Deletes fail too, and leave the record where it was.
            #expect(await statusCode { _ = try await client.delete("before") }?.0 == .internal)
            #expect(first.log.contains("cannot record a created instance; creation undone"))

            _ = chattr("-i", state)
            _ = chattr("-i", journal)
            _ = try await client.create("after", module: example("hello"))
            #expect(Set(try await client.list(namespace: "test").map(\.id)) == ["after"])
            await client.close()
            first.signal(SIGKILL)
            _ = await first.waitForExit()

            let second = try await DaemonProcess(directory: directory, stateDirectory: state, logName: "second.log")
            defer { second.killAndReap() }
            let again = try await second.client()
            // "before" is back: its deletion never became durable, so the restart still knows it.
            #expect(Set(try await again.list(namespace: "test").map(\.id)) == ["after", "before"])
            await again.close()
        }
    }
}
