// A synchronous ttrpc client for the shim's side calls: publishing events to containerd and the
// `delete` subcommand's call to wasmletd. Every step shares one deadline, so a peer that accepts
// but never answers cannot hang the shim.

#if canImport(Glibc)
import Glibc
#endif

enum OneShotClient {
    enum Failure: Error, CustomStringConvertible {
        case connect(path: String, SystemError)
        case io(path: String, SystemError)
        case closed(path: String)
        case timedOut(path: String)
        case malformed(path: String, String)

        var description: String {
            switch self {
            case .connect(let path, let error): "cannot connect to \(path): \(error)"
            case .io(let path, let error): "\(path): \(error)"
            case .closed(let path): "\(path) closed the connection before answering"
            case .timedOut(let path): "\(path) did not answer in time"
            case .malformed(let path, let what): "\(path) sent a malformed answer: \(what)"
            }
        }
    }

    /// Sends each request on its own stream (1, 3, 5...) over one connection and returns the
    /// responses in request order. Fails as a whole if any response is missing at the deadline.
    static func call(
        path: String, requests: [TTRPCRequest], timeoutMilliseconds: Int64
    ) -> Result<[TTRPCResponse], Failure> {
        let deadline = MonotonicClock.milliseconds() + timeoutMilliseconds
        let fd: Int32
        switch UnixSocket.connect(path: path, timeoutMilliseconds: timeoutMilliseconds) {
        case .success(let connected): fd = connected
        case .failure(let error): return .failure(.connect(path: path, error))
        }
        defer { close(fd) }

        var queue = WriteQueue()
        for (index, request) in requests.enumerated() {
            let frame = Frame(streamID: UInt32(2 * index + 1), type: .request, payload: request.encoded())
            queue.append(frame.encoded())
        }
        var reader = FrameReader()
        var responses = [UInt32: TTRPCResponse]()
        var scratch = [UInt8](repeating: 0, count: 16384)

        while responses.count < requests.count {
            guard queue.flush(to: fd) else { return .failure(.io(path: path, .last)) }
            let remaining = deadline - MonotonicClock.milliseconds()
            guard remaining > 0 else { return .failure(.timedOut(path: path)) }
            var events = Int16(POLLIN)
            if !queue.isEmpty { events |= Int16(POLLOUT) }
            var pollFD = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&pollFD, 1, Int32(min(remaining, 60_000)))
            if ready < 0 && errno == EINTR { continue }
            guard ready >= 0 else { return .failure(.io(path: path, .last)) }
            guard ready > 0, pollFD.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { continue }

            let count = scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .failure(.io(path: path, .last))
            }
            if count == 0 { return .failure(.closed(path: path)) }
            scratch.withUnsafeBytes { reader.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            do {
                while let frame = try reader.next() {
                    guard frame.type == FrameType.response.rawValue, frame.streamID % 2 == 1,
                        Int(frame.streamID / 2) < requests.count
                    else { continue }
                    responses[frame.streamID] = try TTRPCResponse(decoding: frame.payload)
                }
            } catch {
                return .failure(.malformed(path: path, "\(error)"))
            }
        }
        var ordered = [TTRPCResponse]()
        for index in requests.indices {
            guard let response = responses[UInt32(2 * index + 1)] else {
                return .failure(.malformed(path: path, "response for stream \(2 * index + 1) missing"))
            }
            ordered.append(response)
        }
        return .success(ordered)
    }
}
