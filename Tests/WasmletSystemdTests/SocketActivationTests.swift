#if os(Linux)
import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletSystemd

/// Connects to a unix or TCP (127.0.0.1) stream socket, retrying while it does not exist yet
/// or refuses (systemd-socket-activate has not bound it yet). Returns the connected fd. The
/// timeout is a hang guard.
func connectWhenListening(unixPath: String? = nil, tcpPort: UInt16? = nil, timeout: Duration = .seconds(10)) async -> Int32? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let family = unixPath != nil ? AF_UNIX : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let result: Int32
        if let unixPath {
            var address = makeUnixAddress(unixPath)
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = tcpPort!.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        if result == 0 { return fd }
        close(fd)
        try? await Task.sleep(for: .milliseconds(20))
    }
    return nil
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    try withUnsafeMutablePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            guard bind(fd, $0, length) == 0, getsockname(fd, $0, &length) == 0 else {
                throw POSIXError(.init(rawValue: errno)!)
            }
        }
    }
    return UInt16(bigEndian: address.sin_port)
}

/// The probe's report lines (systemd-socket-activate's own log lines filtered out).
func probeLines(_ output: String) -> [String] {
    output.split(separator: "\n").map(String.init).filter {
        $0.hasPrefix("count=") || $0.hasPrefix("socket ") || $0.hasPrefix("env ") || $0.hasPrefix("error ")
    }
}

extension SystemdEnvironmentTests {
    @Suite struct SocketActivationInProcessTests {
        @Test func notActivatedReturnsEmpty() throws {
            let sockets = try withEnvironment(["LISTEN_PID": nil, "LISTEN_FDS": nil, "LISTEN_FDNAMES": nil]) {
                try SocketActivation.takeListeningSockets(expectedFamilies: ["api": .unix])
            }
            #expect(sockets.isEmpty)
        }

        @Test func socketsMeantForAnotherProcessAreIgnoredAndTheEnvironmentCleared() throws {
            try withEnvironment([
                "LISTEN_PID": String(getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "api",
            ]) {
                let sockets = try SocketActivation.takeListeningSockets()
                #expect(sockets.isEmpty)
                #expect(getenv("LISTEN_PID") == nil)
                #expect(getenv("LISTEN_FDS") == nil)
                #expect(getenv("LISTEN_FDNAMES") == nil)
            }
        }

        @Test func malformedListenFdsThrows() {
            withEnvironment(["LISTEN_PID": String(getpid()), "LISTEN_FDS": "many", "LISTEN_FDNAMES": nil]) {
                let error = #expect(throws: SocketActivation.Failure.self) {
                    try SocketActivation.takeListeningSockets()
                }
                #expect(error == .listenFDs(SystemdError(operation: "sd_listen_fds_with_names", errno: EINVAL)))
            }
        }

        @Test func verifyChecksFamilyAndListening() throws {
            // A listening unix socket, a listening IPv4 socket, and a non-listening one.
            let directory = try TemporaryDirectory(prefix: "wasmlet-sd")
            let unixFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(unixFD) }
            var address = makeUnixAddress(directory.path + "/v.sock")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(unixFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            try #require(bound == 0 && listen(unixFD, 1) == 0)

            let inetFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(inetFD) }
            var inet = sockaddr_in()
            inet.sin_family = sa_family_t(AF_INET)
            inet.sin_addr.s_addr = inet_addr("127.0.0.1")
            let inetBound = withUnsafePointer(to: &inet) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(inetFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            try #require(inetBound == 0 && listen(inetFD, 1) == 0)

            let idleFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(idleFD) }

            #expect(SocketActivation.verify(unixFD, expected: .unix) == .unix)
            #expect(SocketActivation.verify(unixFD, expected: nil) == .unix)
            #expect(SocketActivation.verify(unixFD, expected: .ipv4) == nil)
            #expect(SocketActivation.verify(unixFD, expected: .internet) == nil)
            #expect(SocketActivation.verify(inetFD, expected: .ipv4) == .ipv4)
            #expect(SocketActivation.verify(inetFD, expected: .internet) == .ipv4)
            #expect(SocketActivation.verify(inetFD, expected: nil) == .ipv4)
            #expect(SocketActivation.verify(inetFD, expected: .ipv6) == nil)
            #expect(SocketActivation.verify(inetFD, expected: .unix) == nil)
            #expect(SocketActivation.verify(idleFD, expected: .unix) == nil)
            #expect(SocketActivation.verify(idleFD, expected: nil) == nil)
        }
    }

    /// End to end: the real `systemd-socket-activate` binds the socket, waits for the first
    /// connection, and execs the probe with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set.
    @Suite(.enabled(if: executableOnPath("systemd-socket-activate") != nil, "needs systemd-socket-activate (Debian package systemd)"))
    struct SocketActivationEndToEndTests {
        let activate = executableOnPath("systemd-socket-activate") ?? "systemd-socket-activate"

        @Test func probeReportsOneListeningUnixSocketNamedAPI() async throws {
            let directory = try TemporaryDirectory(prefix: "wasmlet-sd")
            let path = directory.path + "/x.sock"
            let child = try SpawnedTool(activate, ["-l", path, "--fdname=api", probePath, "sockets", "api=unix"])
            let client = await connectWhenListening(unixPath: path)
            #expect(client != nil, "could not connect to \(path)")
            let (status, output) = await child.finish()
            if let client { close(client) }

            #expect(status == 0, "\(output)")
            #expect(probeLines(output) == [
                "count=1",
                "socket fd=3 name=api family=unix cloexec=1",
                "env LISTEN_PID=- LISTEN_FDS=- LISTEN_FDNAMES=-",
            ], "\(output)")
        }

        @Test func probeReportsAPIAndMetricsSocketsInOrder() async throws {
            let directory = try TemporaryDirectory(prefix: "wasmlet-sd")
            let path = directory.path + "/api.sock"
            let port = try freeLoopbackPort()
            let child = try SpawnedTool(activate, [
                "-l", path, "-l", "127.0.0.1:\(port)", "--fdname=api:metrics",
                probePath, "sockets", "api=unix", "metrics=internet",
            ])
            let client = await connectWhenListening(tcpPort: port)
            #expect(client != nil, "could not connect to 127.0.0.1:\(port)")
            let (status, output) = await child.finish()
            if let client { close(client) }

            #expect(status == 0, "\(output)")
            #expect(probeLines(output) == [
                "count=2",
                "socket fd=3 name=api family=unix cloexec=1",
                "socket fd=4 name=metrics family=ipv4 cloexec=1",
                "env LISTEN_PID=- LISTEN_FDS=- LISTEN_FDNAMES=-",
            ], "\(output)")
        }

        @Test func socketOfTheWrongFamilyIsRefused() async throws {
            let directory = try TemporaryDirectory(prefix: "wasmlet-sd")
            let path = directory.path + "/x.sock"
            let child = try SpawnedTool(activate, ["-l", path, "--fdname=api", probePath, "sockets", "api=ipv4"])
            let client = await connectWhenListening(unixPath: path)
            let (status, output) = await child.finish()
            if let client { close(client) }

            #expect(status == 1)
            #expect(probeLines(output) == ["error inherited fd 3 'api' is not a listening ipv4 stream socket"], "\(output)")
        }

        @Test func probeWithoutActivationReportsNothing() async throws {
            // Run directly, with LISTEN_* cleared for the child: the fallback path.
            let (status, output) = try await SpawnedTool.run(
                probePath, ["sockets", "api=unix"], unset: ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"])
            #expect(status == 0)
            #expect(probeLines(output) == ["count=0", "env LISTEN_PID=- LISTEN_FDS=- LISTEN_FDNAMES=-"], "\(output)")
        }
    }
}
#endif
