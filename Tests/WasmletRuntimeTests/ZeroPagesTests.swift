import Glibc
import Testing
@testable import WasmletRuntime

/// ZeroPages gives all-zero pages back to the kernel and keeps every byte as it was.
@Suite struct ZeroPagesTests {
    @Test func zeroPagesLeaveResidencyAndKeepTheirContents() throws {
        let page = ZeroPages.pageSize
        var bytes = [UInt8](repeating: 0, count: 64 * page)
        // Written, so resident: the whole buffer, as WasmKit's zero-filled memory is.
        bytes.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        bytes[5 * page + 100] = 7
        bytes[40 * page] = 9
        let released = bytes.withUnsafeMutableBytes { ZeroPages.release($0) }
        // 64 pages of buffer hold 63 whole aligned pages, 2 of them not zero.
        #expect(released >= 60 && released <= 62, "released \(released) pages")
        // Released pages are not resident (mincore, before anything reads them again); the
        // two written ones still are.
        let (resident, total) = bytes.withUnsafeBytes { buffer -> (Int, Int) in
            let mask = page - 1
            let start = (Int(bitPattern: buffer.baseAddress!) + mask) & ~mask
            let end = (Int(bitPattern: buffer.baseAddress!) + buffer.count) & ~mask
            var vector = [UInt8](repeating: 0, count: (end - start) / page)
            guard mincore(UnsafeMutableRawPointer(bitPattern: start), end - start, &vector) == 0 else { return (-1, 0) }
            return (vector.filter { $0 & 1 != 0 }.count, vector.count)
        }
        #expect(total > 0)
        #expect(resident <= 4, "\(resident) of \(total) pages still resident")
        // Every byte reads as before.
        #expect(bytes[5 * page + 100] == 7)
        #expect(bytes[40 * page] == 9)
        #expect(bytes.enumerated().allSatisfy { index, byte in byte == 0 || index == 5 * page + 100 || index == 40 * page })
    }

    @Test func smallOrEmptyBuffersAreLeftAlone() {
        var small = [UInt8](repeating: 0, count: 100)
        #expect(small.withUnsafeMutableBytes { ZeroPages.release($0) } == 0)
        #expect(ZeroPages.release(UnsafeMutableRawBufferPointer(start: nil, count: 0)) == 0)
    }
}
