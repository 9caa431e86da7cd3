import Testing

@testable import WasmletShim

@Suite struct ProtoWireTests {
    @Test func varintsRoundTripAtTheBoundaries() throws {
        let values: [UInt64] = [0, 1, 127, 128, 300, 16383, 16384, UInt64(UInt32.max), UInt64.max - 1, UInt64.max]
        var writer = ProtoWriter()
        for (index, value) in values.enumerated() {
            writer.appendKey(index + 1, .varint)
            writer.appendVarint(value)
        }
        var reader = ProtoReader(writer.bytes)
        var decoded = [UInt64]()
        while let field = try reader.next() {
            #expect(field.number == decoded.count + 1)
            #expect(field.wireType == .varint)
            decoded.append(field.value)
        }
        #expect(decoded == values)
    }

    @Test func knownEncodings() {
        // The protobuf documentation's examples: 150 in field 1; "testing" in field 2.
        var writer = ProtoWriter()
        writer.uint64(1, 150)
        #expect(writer.bytes == [0x08, 0x96, 0x01])
        writer = ProtoWriter()
        writer.string(2, "testing")
        #expect(writer.bytes == [0x12, 0x07] + Array("testing".utf8))
        // Negative int32 values are sign-extended to ten bytes.
        writer = ProtoWriter()
        writer.int32(1, -1)
        #expect(writer.bytes == [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        // Defaults are omitted; embedded messages are not.
        writer = ProtoWriter()
        writer.uint64(1, 0)
        writer.string(2, "")
        writer.message(3, [])
        #expect(writer.bytes == [0x1A, 0x00])
    }

    @Test func signedValuesRoundTrip() throws {
        var writer = ProtoWriter()
        writer.int32(1, -5)
        writer.int64(2, Int64.min)
        writer.bool(3, true)
        var reader = ProtoReader(writer.bytes)
        #expect(try reader.next()?.int32 == -5)
        #expect(try reader.next()?.int64 == Int64.min)
        #expect(try reader.next()?.bool == true)
        #expect(try reader.next() == nil)
    }

    @Test func unknownFieldsOfEveryWireTypeAreSkipped() throws {
        var writer = ProtoWriter()
        writer.appendKey(9, .fixed64)
        writer.appendVarint(0)  // placeholder, replaced below
        var bytes = Array(writer.bytes.dropLast()) + [1, 2, 3, 4, 5, 6, 7, 8]
        bytes += [0x55, 0xAA, 0xBB, 0xCC, 0xDD]  // field 10, fixed32
        var rest = ProtoWriter()
        rest.data(11, [9, 9, 9])
        rest.string(1, "wanted")
        bytes += rest.bytes
        var reader = ProtoReader(bytes)
        var seen = [(Int, ProtoWireType)]()
        var wanted = ""
        while let field = try reader.next() {
            seen.append((field.number, field.wireType))
            if field.number == 1 { wanted = reader.string(field) }
        }
        #expect(seen.map(\.0) == [9, 10, 11, 1])
        #expect(seen.map(\.1) == [.fixed64, .fixed32, .lengthDelimited, .lengthDelimited])
        #expect(wanted == "wanted")
    }

    @Test func malformedInputThrowsInsteadOfTrapping() {
        let cases: [[UInt8]] = [
            [0x0A, 0x05, 0x01],  // length beyond the end
            [0x08],  // missing varint
            [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],  // 11-byte varint
            [0x00, 0x01],  // field number 0
            [0x0B],  // group start (wire type 3)
            [0x0D, 0x01, 0x02],  // truncated fixed32
            [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],  // huge length
        ]
        for bytes in cases {
            var reader = ProtoReader(bytes)
            #expect(throws: ProtoError.self, "\(bytes)") {
                while try reader.next() != nil {}
            }
        }
    }

    @Test func everyTruncationOfAValidMessageIsHandled() throws {
        let request = TTRPCRequest(
            service: "containerd.task.v2.Task", method: "Create", payload: Array(repeating: 7, count: 300),
            timeoutNano: 5_000_000_000, metadata: [MetadataEntry("k", "v")])
        let bytes = request.encoded()
        #expect(try TTRPCRequest(decoding: bytes) == request)
        for length in 0..<bytes.count {
            // Either an error or a (partial) message; never a crash.
            _ = try? TTRPCRequest(decoding: Array(bytes[0..<length]))
        }
    }
}
