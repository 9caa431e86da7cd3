import WasmletTestSupport
#if os(Linux)
import Foundation
import Glibc
import Testing

/// Every test that reads or writes the process environment (NOTIFY_SOCKET, WATCHDOG_*,
/// LISTEN_*, JOURNAL_STREAM) or spawns a process (which copies the environment) lives in a
/// suite nested in this one, so they run one at a time: libsystemd reads the variables at
/// call time, and setenv racing with getenv is undefined behaviour.
@Suite(.serialized)
struct SystemdEnvironmentTests {}

/// Runs `body` with the given variables set (`nil`: unset), restoring the previous values.
@discardableResult
func withEnvironment<T>(_ variables: [String: String?], _ body: () throws -> T) rethrows -> T {
    var saved: [String: String?] = [:]
    for (name, value) in variables {
        saved[name] = getenv(name).map { String(cString: $0) }
        if let value { setenv(name, value, 1) } else { unsetenv(name) }
    }
    defer {
        for (name, value) in saved {
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
    }
    return try body()
}

func monotonicMicroseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
}

func makeUnixAddress(_ path: String) -> sockaddr_un {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    precondition(bytes.count < MemoryLayout.size(ofValue: address.sun_path))
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes + [0]) }
    return address
}

/// One datagram as systemd's manager would receive it on NOTIFY_SOCKET.
struct NotifyDatagram {
    var text: String
    var fileDescriptors: [Int32]
    /// CLOCK_MONOTONIC µs when the test received it.
    var receivedAt: UInt64
}

/// A stand-in for the service manager's end of NOTIFY_SOCKET: an AF_UNIX SOCK_DGRAM
/// socket bound in a temporary directory, like /run/systemd/notify.
final class NotifyReceiver {
    let directory: TemporaryDirectory
    let path: String
    private let fd: Int32

    init() throws {
        directory = try TemporaryDirectory(prefix: "wasmlet-sd")
        path = directory.path + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno)!) }
        var address = makeUnixAddress(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else { throw POSIXError(.init(rawValue: errno)!) }
    }

    deinit {
        close(fd)
    }

    /// The next datagram, or `nil` after `timeoutMilliseconds` without one.
    func receive(timeoutMilliseconds: Int32 = 2_000) -> NotifyDatagram? {
        var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pollFD, 1, timeoutMilliseconds) == 1 else { return nil }

        var data = [UInt8](repeating: 0, count: 4096)
        var control = [UInt8](repeating: 0, count: 256)
        var controlLength = 0
        let received: Int = data.withUnsafeMutableBytes { dataBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: dataBytes.baseAddress, iov_len: dataBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    let count = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
                    controlLength = Int(message.msg_controllen)
                    return count
                }
            }
        }
        guard received >= 0 else { return nil }
        return NotifyDatagram(
            text: String(decoding: data[0..<received], as: UTF8.self),
            fileDescriptors: Self.rights(in: Array(control.prefix(controlLength))),
            receivedAt: monotonicMicroseconds()
        )
    }

    /// Everything that arrives within `milliseconds`.
    func collect(forMilliseconds milliseconds: UInt64) -> [NotifyDatagram] {
        let deadline = monotonicMicroseconds() + milliseconds * 1_000
        var datagrams: [NotifyDatagram] = []
        while true {
            let now = monotonicMicroseconds()
            guard now < deadline else { break }
            let remaining = Int32((deadline - now + 999) / 1_000)
            guard let datagram = receive(timeoutMilliseconds: remaining) else { break }
            datagrams.append(datagram)
        }
        return datagrams
    }

    /// Discards whatever is queued.
    func drain() {
        while receive(timeoutMilliseconds: 0) != nil {}
    }

    /// The descriptors in the SCM_RIGHTS messages of a control buffer (cmsghdr walk,
    /// as CMSG_FIRSTHDR/CMSG_NXTHDR do on 64-bit Linux).
    private static func rights(in control: [UInt8]) -> [Int32] {
        var descriptors: [Int32] = []
        let headerSize = MemoryLayout<cmsghdr>.size
        let alignment = MemoryLayout<Int>.size
        var offset = 0
        control.withUnsafeBytes { bytes in
            while offset + headerSize <= bytes.count {
                let header = bytes.loadUnaligned(fromByteOffset: offset, as: cmsghdr.self)
                let length = Int(header.cmsg_len)
                guard length >= headerSize, offset + length <= bytes.count else { break }
                if header.cmsg_level == SOL_SOCKET && header.cmsg_type == Int32(SCM_RIGHTS) {
                    var at = offset + headerSize
                    while at + 4 <= offset + length {
                        descriptors.append(bytes.loadUnaligned(fromByteOffset: at, as: Int32.self))
                        at += 4
                    }
                }
                offset += (length + alignment - 1) & ~(alignment - 1)
            }
        }
        return descriptors
    }
}

var probePath: String { productsDirectory() + "/wasmlet-sd-probe" }

/// Finds `name` on PATH (as `which` does).
func executableOnPath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    for directory in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] where access("\(directory)/\(name)", X_OK) == 0 {
        return "\(directory)/\(name)"
    }
    return nil
}

/// A tool spawned with its stdout and stderr in one file, read once it ends. It is
/// WasmletTestSupport's `ChildProcess` (posix_spawn, waitpid polling): Foundation's `Process`
/// and `Pipe` leave descriptors that children spawned at the same moment by other suites
/// inherit, and its blocking waits would hold one of the concurrency pool's two threads.
struct SpawnedTool {
    let child: ChildProcess
    private let outputPath: String

    /// `environment`: this process's, minus `unset` (the LISTEN_* variables, say).
    init(_ executable: String, _ arguments: [String], unset: [String] = []) throws {
        var environment = ProcessInfo.processInfo.environment
        for name in unset { environment[name] = nil }
        outputPath = NSTemporaryDirectory() + "/wasmlet-sd-tool-\(UUID().uuidString).out"
        child = try ChildProcess(executable, arguments, environment: environment, stdout: outputPath, stderr: nil)
    }

    /// Waits for the exit; past `timeout` (a hang guard) the child is killed.
    func finish(timeout: Duration = .seconds(30)) async -> (status: Int32, output: String) {
        let ended = await child.wait(timeout: timeout) ?? child.killAndReap()
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        unlink(outputPath)
        return (ended.status, output)
    }

    /// Runs to completion.
    static func run(_ executable: String, _ arguments: [String], unset: [String] = []) async throws -> (status: Int32, output: String) {
        try await SpawnedTool(executable, arguments, unset: unset).finish()
    }
}
#endif
