// ttrpc frames on a byte stream. The relay works at this level: it reads whole frames, looks at
// (and sometimes extends) request payloads, and rewrites stream ids, without any other decoding.
//
//     bytes 0-3  payload length (uint32, big-endian), at most 4 MiB
//     bytes 4-7  stream id (uint32, big-endian); client streams are odd
//     byte  8    type: 1 request, 2 response, 3 data
//     byte  9    flags

#if canImport(Glibc)
import Glibc
#endif

public enum FrameType: UInt8, Sendable {
    case request = 1
    case response = 2
    case data = 3
}

/// One whole frame.
public struct Frame: Sendable, Equatable {
    public static let headerSize = 10
    /// ttrpc's limit; containerd and the daemon refuse larger frames.
    public static let maxPayload = 4 << 20

    public var streamID: UInt32
    /// The raw type byte (see `FrameType`); kept raw so unknown types can be reported.
    public var type: UInt8
    public var flags: UInt8
    public var payload: [UInt8]

    public init(streamID: UInt32, type: FrameType, flags: UInt8 = 0, payload: [UInt8]) {
        self.init(streamID: streamID, rawType: type.rawValue, flags: flags, payload: payload)
    }

    public init(streamID: UInt32, rawType: UInt8, flags: UInt8, payload: [UInt8]) {
        self.streamID = streamID
        self.type = rawType
        self.flags = flags
        self.payload = payload
    }

    /// Header followed by payload, ready to write.
    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Frame.headerSize + payload.count)
        Frame.appendBigEndian(UInt32(truncatingIfNeeded: payload.count), to: &out)
        Frame.appendBigEndian(streamID, to: &out)
        out.append(type)
        out.append(flags)
        out.append(contentsOf: payload)
        return out
    }

    static func appendBigEndian(_ value: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: value >> 24))
        out.append(UInt8(truncatingIfNeeded: value >> 16))
        out.append(UInt8(truncatingIfNeeded: value >> 8))
        out.append(UInt8(truncatingIfNeeded: value))
    }
}

/// The peer announced a payload above the limit. Nothing after it can be trusted to be
/// frame-aligned, so the connection has to be closed.
public struct OversizeFrame: Error, Equatable, Sendable, CustomStringConvertible {
    public let length: UInt32
    public var description: String { "ttrpc frame of \(length) bytes exceeds the \(Frame.maxPayload)-byte limit" }
}

/// Collects bytes as they arrive (in any split) and hands out whole frames.
public struct FrameReader: Sendable {
    private var buffer: [UInt8] = []
    /// Bytes before `start` were already consumed; compacted lazily to avoid copying per frame.
    private var start = 0
    private let maxPayload: Int

    public init(maxPayload: Int = Frame.maxPayload) {
        self.maxPayload = maxPayload
    }

    /// Bytes received but not yet returned as frames.
    public var bufferedCount: Int { buffer.count - start }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil when more bytes are needed.
    public mutating func next() throws(OversizeFrame) -> Frame? {
        guard buffer.count - start >= Frame.headerSize else {
            compact()
            return nil
        }
        let length = readBigEndian(at: start)
        guard Int(length) <= maxPayload else { throw OversizeFrame(length: length) }
        let total = Frame.headerSize + Int(length)
        guard buffer.count - start >= total else {
            compact()
            return nil
        }
        let frame = Frame(
            streamID: readBigEndian(at: start + 4),
            rawType: buffer[start + 8],
            flags: buffer[start + 9],
            payload: Array(buffer[(start + Frame.headerSize)..<(start + total)]))
        start += total
        return frame
    }

    private func readBigEndian(at offset: Int) -> UInt32 {
        UInt32(buffer[offset]) << 24 | UInt32(buffer[offset + 1]) << 16
            | UInt32(buffer[offset + 2]) << 8 | UInt32(buffer[offset + 3])
    }

    /// Drops consumed bytes once they are the larger part of the buffer, and releases the storage
    /// entirely when empty so an idle connection holds no memory.
    private mutating func compact() {
        if start == buffer.count {
            buffer = []
            start = 0
        } else if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
    }
}

/// Bytes waiting to be written to a non-blocking socket.
public struct WriteQueue: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public var isEmpty: Bool { start == buffer.count }

    /// Bytes queued and not yet written.
    public var count: Int { buffer.count - start }

    public mutating func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }

    /// Writes as much as the socket takes. Returns false on a write error other than EAGAIN
    /// (the peer is gone).
    public mutating func flush(to fd: Int32) -> Bool {
        while start < buffer.count {
            let written = buffer.withUnsafeBytes { raw in
                write(fd, raw.baseAddress! + start, raw.count - start)
            }
            if written > 0 {
                start += written
                continue
            }
            let error = errno
            if written < 0 && error == EINTR { continue }
            if written < 0 && (error == EAGAIN || error == EWOULDBLOCK) { break }
            return false
        }
        if start == buffer.count {
            buffer = []
            start = 0
        }
        return true
    }
}
