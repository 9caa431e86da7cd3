import Foundation
import SwiftProtobuf
import Testing
import WasmletAPI

@testable import WasmletService

/// List's hand-assembled response is the ListResponse SwiftProtobuf would write.
@Suite struct ListEncodingTests {
    @Test func listResponseBytesMatchTheMessage() throws {
        let instances = (0..<300).map { index in
            Wasmlet_V1_Instance.with {
                $0.namespace = "ns"
                $0.id = "instance-\(index)-" + String(repeating: "x", count: index)  // lengths past 127 and 16383
                $0.labels = ["app": "a\(index)"]
                $0.createdAt = Google_Protobuf_Timestamp(seconds: 1_700_000_000 + Int64(index), nanos: 5)
                if index % 2 == 0 { $0.exit = .with { $0.code = Int32(index); $0.message = String(repeating: "m", count: 200 * index) } }
            }
        }
        for slice in [instances[0..<0], instances[0..<1], instances[...]] {
            let expected: [UInt8] = try Wasmlet_V1_ListResponse.with { $0.instances = Array(slice) }.serializedBytes()
            let bytes = try ListResponseEncoder.responseBytes(of: Array(slice))
            #expect(bytes == expected)
            #expect(try Wasmlet_V1_ListResponse(serializedBytes: bytes).instances == Array(slice))
        }
    }
}
