import WasmKit

/// The standard streams of one per-request run (the HTTP trigger's): stdin is the request body,
/// read to its end and then end-of-file; stdout is collected in memory up to a limit; stderr is
/// handed to a callback line by line. No descriptors and no syscalls: a request's stdio costs a
/// copy of its bytes and nothing else.
///
/// Used by the guest's thread only, from its fd_read and fd_write (see `WASIHost`).
final class RequestStdio {
    private let input: [UInt8]
    private var inputOffset = 0
    private(set) var output: [UInt8] = []
    private let maxOutputBytes: Int
    /// Set once a write would have taken stdout past its limit; nothing more is kept.
    private(set) var outputOverflowed = false
    private let stderrLine: @Sendable ([UInt8]) -> Void
    private var stderrPending: [UInt8] = []
    /// Lines kept back instead of passed on, while a run may still be thrown away (a run on the
    /// caller's thread that outgrew its slice, see `ServiceRuns`); nil: passed on at once.
    private var heldStderr: [[UInt8]]?
    private var heldBytes = 0
    /// Most stderr bytes held back; past it the run must go where its lines can be passed on.
    static let maxHeldStderrBytes = 64 << 10
    /// More stderr came than may be held back.
    var heldStderrOverflowed: Bool { heldBytes > Self.maxHeldStderrBytes }
    /// Longest stderr line kept whole; a longer one is passed on in pieces of this size.
    static let maxStderrLine = 16 << 10

    init(input: [UInt8], maxOutputBytes: Int, holdingStderr: Bool = false, stderrLine: @escaping @Sendable ([UInt8]) -> Void) {
        self.input = input
        self.maxOutputBytes = maxOutputBytes
        self.stderrLine = stderrLine
        heldStderr = holdingStderr ? [] : nil
    }

    /// Passes on the stderr lines held back: the run counts.
    func releaseHeldStderr() {
        let lines = heldStderr ?? []
        heldStderr = nil
        for line in lines { stderrLine(line) }
    }

    private func emitStderr(_ line: [UInt8]) {
        if heldStderr != nil {
            heldStderr!.append(line)
            heldBytes += line.count
        } else {
            stderrLine(line)
        }
    }

    /// fd_read on stdin: fills the iovecs from the body; 0 bytes once it is all read.
    func read(_ access: GuestMemoryAccess, iovs: UInt32, count: UInt32) throws -> UInt32 {
        var total: UInt32 = 0
        for index in 0..<count {
            let base = iovs &+ index &* 8
            let pointer = try access.load(base, as: UInt32.self)
            let length = try access.load(base &+ 4, as: UInt32.self)
            let chunk = min(Int(length), input.count - inputOffset)
            if chunk == 0 { break }
            let offset = inputOffset
            try access.withBytes(at: pointer, count: chunk) { target in
                input.withUnsafeBytes { target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + chunk])) }
            }
            inputOffset += chunk
            total += UInt32(chunk)
        }
        return total
    }

    /// fd_write on stdout (fd 1) or stderr (fd 2). A stdout write past the limit is refused
    /// whole with EFBIG and marks the output overflowed (the trigger answers 502).
    func write(fd: UInt32, _ access: GuestMemoryAccess, iovs: UInt32, count: UInt32) throws -> (WASIErrno, UInt32) {
        var pieces: [(UInt32, UInt32)] = []
        var total: UInt64 = 0
        for index in 0..<count {
            let base = iovs &+ index &* 8
            let pointer = try access.load(base, as: UInt32.self)
            let length = try access.load(base &+ 4, as: UInt32.self)
            pieces.append((pointer, length))
            total += UInt64(length)
        }
        if fd == 1 {
            guard !outputOverflowed, UInt64(output.count) + total <= UInt64(maxOutputBytes) else {
                outputOverflowed = true
                return (.fbig, 0)
            }
        }
        for (pointer, length) in pieces {
            try access.withBytes(at: pointer, count: Int(length)) { bytes in
                if fd == 1 { output.append(contentsOf: bytes) } else { appendStderr(UnsafeRawBufferPointer(bytes)) }
            }
        }
        return (.success, UInt32(truncatingIfNeeded: total))
    }

    private func appendStderr(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                emitStderr(stderrPending)
                stderrPending.removeAll(keepingCapacity: true)
            } else {
                stderrPending.append(byte)
                if stderrPending.count >= Self.maxStderrLine {
                    emitStderr(stderrPending)
                    stderrPending.removeAll(keepingCapacity: true)
                }
            }
        }
    }

    /// Passes on a last stderr line that had no newline; called when the run ends.
    func flushStderr() {
        if !stderrPending.isEmpty { emitStderr(stderrPending) }
        stderrPending = []
    }
}
