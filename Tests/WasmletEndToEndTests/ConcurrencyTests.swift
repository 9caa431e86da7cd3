import Foundation
import Testing
import WasmletAPI
import WasmletTestSupport

extension DaemonEndToEndTests {
    @Suite struct Concurrency {
        /// 200 clients, each on its own connection, create+start+wait hello at once.
        @Test func twoHundredConcurrentClients() async throws {
            let directory = try TemporaryDirectory()
            // 200 live instances at 16 MiB each fit any test machine's default budget.
            let daemon = try await DaemonProcess(directory: directory, arguments: ["--default-memory", "16MiB", "--log-level", "info"])
            defer { daemon.killAndReap() }
            let path = daemon.socketPath
            let hello = example("hello")
            let results = await withTaskGroup(of: Result<Wasmlet_V1_ExitRecord, any Error>.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        do {
                            let client = try await RuntimeClient(socketPath: path)
                            defer { Task { await client.close() } }
                            let id = "c\(index)"
                            _ = try await client.create(id, module: hello)
                            _ = try await client.start(id)
                            return .success(try await client.wait(id, timeout: .seconds(120)))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                var results: [Result<Wasmlet_V1_ExitRecord, any Error>] = []
                for await result in group { results.append(result) }
                return results
            }
            let failures = results.compactMap { result -> String? in
                if case .failure(let error) = result { return "\(error)" }
                return nil
            }
            #expect(failures.isEmpty, "\(failures.count) failed, e.g. \(failures.first ?? "")")
            let exits = results.compactMap { try? $0.get() }
            let nonZero = exits.filter { $0.code != 0 }
            #expect(exits.count == 200)
            #expect(nonZero.isEmpty, "\(nonZero.count) non-zero exits, e.g. \(nonZero.first.map { "\($0.code) \($0.reason) \($0.message)" } ?? "")")
            let client = try await daemon.client()
            let stats = try await client.stats()
            #expect(stats.instancesCreated == 200)
            #expect(stats.exited == 200)
            await client.close()
        }
    }
}
