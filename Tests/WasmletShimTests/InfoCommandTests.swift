// `-info` as containerd 2.2+ runs it: the real binary, runtime options on stdin, RuntimeInfo on
// stdout. Fields are read by number, as containerd.types.RuntimeInfo defines them
// (api/types/introspection.proto): name=1, version=2 RuntimeVersion{version=1, revision=2},
// options=3 Any, features=4 Any, annotations=5.

import Foundation
import SwiftProtobuf
import Testing

@testable import WasmletShim

@Suite struct InfoCommandTests {
    /// The top-level fields of `bytes` by number (the last one wins, as protobuf reads them).
    private func fields(_ bytes: [UInt8]) throws -> [Int: (field: ProtoField, reader: ProtoReader)] {
        var reader = ProtoReader(bytes)
        var result: [Int: (field: ProtoField, reader: ProtoReader)] = [:]
        while let field = try reader.next() { result[field.number] = (field, reader) }
        return result
    }

    private func runInfo(stdin: String) async throws -> ProcessResult {
        try await runProcess(
            shimBinaryPath, ["-info"], environment: ProcessInfo.processInfo.environment, directory: "/", stdin: stdin)
    }

    @Test func answersRuntimeInfoAndEchoesTheOptions() async throws {
        // The options as containerd marshals them: a google.protobuf.Any (encoded by swift-protobuf).
        let options = try Google_Protobuf_Any.with {
            $0.typeURL = "types.containerd.io/wasmlet.test.Options"
            $0.value = Data([0x0A, 0x02, 0x68, 0x69])
        }.serializedData()
        let input = NSTemporaryDirectory() + "wshim-info-\(UUID().uuidString)"
        try options.write(to: URL(fileURLWithPath: input))
        defer { unlink(input) }

        let result = try await runInfo(stdin: input)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stderr.isEmpty)
        let info = try fields(Array(result.stdout))
        let name = try #require(info[1])
        #expect(name.field.wireType == .lengthDelimited && name.reader.string(name.field) == "io.containerd.wasmlet.v1")
        let version = try #require(info[2])
        let versionFields = try fields(version.reader.data(version.field))
        let number = try #require(versionFields[1])
        #expect(number.reader.string(number.field) == ShimContext.versionNumber)
        let echoed = try #require(info[3])
        #expect(echoed.reader.data(echoed.field) == Array(options))
        let any = try Google_Protobuf_Any(serializedBytes: echoed.reader.data(echoed.field))
        #expect(any.typeURL == "types.containerd.io/wasmlet.test.Options")
        #expect(info[4] == nil)  // no features announced
    }

    @Test func emptyStdinGivesNameAndVersionOnly() async throws {
        let result = try await runInfo(stdin: "/dev/null")
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let info = try fields(Array(result.stdout))
        #expect(Set(info.keys) == [1, 2])
        #expect(info[1].map { $0.reader.string($0.field) } == "io.containerd.wasmlet.v1")
    }

    @Test func flagParsing() {
        #expect(ShimArguments(parsing: ["-info"]).info)
        #expect(ShimArguments(parsing: ["--info"]).info)
        #expect(!ShimArguments(parsing: ["-id", "x", "start"]).info)
    }
}
