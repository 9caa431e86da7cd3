import Testing

@testable import WasmletShim

@Suite struct FrameCodecTests {
    @Test func headerLayout() {
        let frame = Frame(streamID: 1, type: .request, payload: [UInt8](repeating: 0, count: 42))
        #expect(Array(frame.encoded().prefix(10)) == [0, 0, 0, 0x2A, 0, 0, 0, 1, 1, 0])
    }

    @Test func framesSplitAnywhereOrBatchedComeOutWhole() throws {
        let frames = (0..<5).map { index in
            Frame(streamID: UInt32(2 * index + 1), type: .request, flags: UInt8(index), payload: Array(repeating: UInt8(index), count: index * 7))
        }
        let stream = frames.flatMap { $0.encoded() }
        for chunk in [1, 3, 10, 11, stream.count] {
            var reader = FrameReader()
            var out = [Frame]()
            var offset = 0
            while offset < stream.count {
                let end = min(stream.count, offset + chunk)
                reader.append(Array(stream[offset..<end]))
                offset = end
                while let frame = try reader.next() { out.append(frame) }
            }
            #expect(out == frames, "chunk \(chunk)")
            #expect(reader.bufferedCount == 0)
        }
    }

    @Test func oversizeLengthIsRejectedBeforeBuffering() {
        var reader = FrameReader()
        reader.append([0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 1, 0])  // 4 MiB + 1
        #expect(throws: OversizeFrame.self) { try reader.next() }
        var exact = FrameReader()
        exact.append([0x00, 0x40, 0x00, 0x00, 0, 0, 0, 1, 1, 0])  // exactly 4 MiB: waits for the payload
        #expect((try? exact.next()) == .some(nil))
    }
}
