import Foundation
import Testing
import WasmletTestSupport

/// Every fuzz target's committed inputs, replayed through the ordinary (unsanitized) build of
/// the target: its seed corpus and every input that ever crashed it (Tests/FuzzCorpus/<target>/,
/// crashes named `crash-*`). A crash kills the replaying process, which fails the test; so does a
/// target with no inputs. scripts/fuzz.sh does the fuzzing itself.
@Suite struct FuzzCorpusReplayTests {
    static let targets = [
        "fuzz-ttrpc-frame", "fuzz-shim-wire", "fuzz-oci-config", "fuzz-module", "fuzz-wasi-pointers",
        "fuzz-image-tar", "fuzz-config-toml", "fuzz-http-request",
    ]

    @Test(arguments: targets)
    func replaysItsCorpusWithoutACrash(target: String) async throws {
        let corpus = repositoryRoot + "/Tests/FuzzCorpus/" + target
        let inputs = try FileManager.default.contentsOfDirectory(atPath: corpus).filter { !$0.hasPrefix(".") }
        #expect(inputs.count >= 2, "\(corpus) holds \(inputs.count) inputs")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-replay-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let child = try ChildProcess(
            productsDirectory() + "/" + target, [corpus], environment: ["PATH": "/usr/bin:/bin"], stdout: scratch + "/out")
        let end = await child.wait(timeout: .seconds(120))
        let output = (try? String(contentsOfFile: scratch + "/out", encoding: .utf8)) ?? ""
        #expect(end?.status == 0, "\(target) \(end.map { "\($0)" } ?? "did not finish"): \(output.suffix(2000))")
        #expect(output.contains("replayed \(inputs.count) inputs"), "\(output.suffix(500))")
    }

    /// The replay refuses to pass on nothing: an empty directory is an error, not a green run.
    @Test func aReplayWithNoInputsFails() async throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-empty-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let child = try ChildProcess(productsDirectory() + "/fuzz-module", [empty], environment: [:])
        let end = await child.wait(timeout: .seconds(60))
        #expect(end?.status == 2)
    }
}
