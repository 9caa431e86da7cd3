import Foundation
import NIOCore
import SwiftProtobuf
import Synchronization
import Testing
@testable import WasmletTTRPC

#if canImport(Glibc)
import Glibc
import WasmletTestSupport
#endif

extension TemporaryDirectory {
    func socket(_ name: String = "ttrpc.sock") -> String { "\(path)/\(name)" }
}

/// A value shared between a test and the handlers it registers.
final class Shared<Value: Sendable>: Sendable {
    private let box: Mutex<Value>
    init(_ value: Value) { box = Mutex(value) }
    var value: Value { box.withLock { $0 } }
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R { box.withLock { body(&$0) } }
}

/// Runs `body`, expecting it to throw a `TTRPCError`; returns that error (nil if none was thrown).
func ttrpcError(_ body: () async throws -> Void) async -> TTRPCError? {
    do {
        try await body()
        return nil
    } catch let error as TTRPCError {
        return error
    } catch {
        Issue.record("expected TTRPCError, got \(type(of: error)): \(error)")
        return nil
    }
}

func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Runs blocking work on a Dispatch thread, so it does not hold one of the (few) threads of Swift's
/// cooperative pool that the server's handler tasks need.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// A frame-level ttrpc peer on a plain blocking socket, for sending what TTRPCClient never would
/// (garbage, oversized frames, even stream ids). Reads time out after 5 seconds. Its async methods
/// do the blocking I/O off the cooperative pool.
final class RawSocket: @unchecked Sendable {
    let fd: Int32

    init(path: String) throws {
        fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TTRPCError.internal("socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            Glibc.close(fd)
            throw TTRPCError.unavailable("connect \(path): errno \(errno)")
        }
    }

    deinit { Glibc.close(fd) }

    func send(_ bytes: [UInt8]) async throws {
        try await blocking { try self.sendNow(bytes) }
    }

    private func sendNow(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw TTRPCError.unavailable("send: errno \(errno)") }
            offset += written
        }
    }

    /// Sends a request frame carrying `request` on `stream`.
    func sendRequest(stream: UInt32, _ request: Ttrpc_Request) async throws {
        let payload: [UInt8] = try request.serializedBytes()
        try await send(TTRPCFrameHeader(payloadLength: UInt32(payload.count), streamID: stream, type: .request).bytes + payload)
    }

    /// Reads exactly `count` bytes; nil on end of stream, throws on timeout.
    private func receive(_ count: Int) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = buffer[offset...].withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if got == 0 { return nil }
            guard got > 0 else { throw TTRPCError.deadlineExceeded("recv: errno \(errno)") }
            offset += got
        }
        return buffer
    }

    /// Reads one frame and decodes it as a ttrpc.Response.
    func receiveResponse() async throws -> (header: TTRPCFrameHeader, response: Ttrpc_Response)? {
        try await blocking { try self.receiveResponseNow() }
    }

    private func receiveResponseNow() throws -> (header: TTRPCFrameHeader, response: Ttrpc_Response)? {
        guard let headerBytes = try receive(TTRPCFrameHeader.byteCount) else { return nil }
        var buffer = ByteBuffer(bytes: headerBytes)
        let header = TTRPCFrameHeader.read(from: &buffer)!
        guard let payload = try receive(Int(header.payloadLength)) else { return nil }
        return (header, try Ttrpc_Response(serializedBytes: payload))
    }

    /// True when the peer closed the connection (read returns end of stream) within 5 seconds.
    func waitForClose() async -> Bool {
        (try? await blocking { self.waitForCloseNow() }) ?? false
    }

    private func waitForCloseNow() -> Bool {
        var byte: UInt8 = 0
        while true {
            let got = Glibc.recv(fd, &byte, 1, 0)
            if got == 0 { return true }
            if got < 0 { return errno == ECONNRESET }
        }
    }
}

func makeRequest(service: String, method: String, payload: [UInt8] = [], timeoutNano: Int64 = 0) -> Ttrpc_Request {
    var request = Ttrpc_Request()
    request.service = service
    request.method = method
    request.payload = Data(payload)
    request.timeoutNano = timeoutNano
    return request
}

/// The registry most tests use: service "test.Echo" with
/// - Echo: returns its payload;
/// - Upper: SwiftProtobuf StringValue -> upper-cased StringValue;
/// - Namespace: returns the "containerd-namespace-ttrpc" metadata value;
/// - Fail: throws TTRPCError.notFound("no such thing");
/// - Crash: throws a non-TTRPC error (becomes INTERNAL).
func echoRegistry() -> TTRPCServiceRegistry {
    var registry = TTRPCServiceRegistry()
    registry.register(service: "test.Echo", method: "Echo") { _, payload in payload }
    registry.register(
        service: "test.Echo", method: "Upper", request: Google_Protobuf_StringValue.self,
        response: Google_Protobuf_StringValue.self
    ) { _, request in
        Google_Protobuf_StringValue(request.value.uppercased())
    }
    registry.register(service: "test.Echo", method: "Namespace") { context, _ in
        Array((context.containerdNamespace ?? "<none>").utf8)
    }
    registry.register(service: "test.Echo", method: "Fail") { _, _ in
        throw TTRPCError.notFound("no such thing")
    }
    registry.register(service: "test.Echo", method: "Crash") { _, _ in
        struct Boom: Error, CustomStringConvertible { var description: String { "boom happened" } }
        throw Boom()
    }
    return registry
}
