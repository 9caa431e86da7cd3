import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletRuntime

/// Listeners bound by someone else (containerd's shim, in the pod's network namespace) and
/// given to the runtime as descriptors: placed like the runtime's own, owned and closed by it.
@Suite struct InheritedListenerTests {
    /// A blocking, inheritable (no close-on-exec) listener on 127.0.0.1, as another process
    /// might hand one over; the runtime must make it its own kind.
    static func foreignListener() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw RuntimeError(.internal, "cannot make a listener: \(String(cString: strerror(errno)))")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: actual.sin_port))
    }

    static func inode(_ fd: Int32) -> UInt64? {
        var info = stat()
        return fstat(fd, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    /// Closed: the number is free, or names another file now (other tests run beside this one).
    static func isClosed(_ fd: Int32, was identity: UInt64?) -> Bool { inode(fd) != identity }

    @Test func anInheritedListenerIsPlacedAfterPreopensAndServedAndClosedAtExit() async throws {
        let runtime = try Fixtures.makeRuntime()
        let docroot = try Fixtures.temporaryDirectory()
        try "inherited\n".write(to: docroot.appendingPathComponent("page.txt"), atomically: true, encoding: .utf8)
        let module = try runtime.loadModule(path: Fixtures.guest("httpd"))
        let foreign = try Self.foreignListener()
        let identity = Self.inode(foreign.fd)
        let key = InstanceKey(namespace: "inherited", id: Fixtures.uniqueID())
        let snapshot = try runtime.create(
            InstanceSpec(
                key: key, moduleDigest: module.digest, args: ["httpd", "/srv"],
                preopens: [PreopenSpec(guestPath: "/srv", hostPath: docroot.path)],
                inheritedListeners: [InheritedListener(adopting: foreign.fd)]))
        #expect(snapshot.listeners.map(\.guestFd) == [4])
        #expect(snapshot.listeners.map(\.boundAddress) == ["127.0.0.1:\(foreign.port)"])
        #expect(snapshot.listeners.map(\.requested) == [ListenerSpec(address: "127.0.0.1", port: foreign.port)])
        // Adopted as the runtime's own kind: non-blocking and close-on-exec.
        #expect(fcntl(foreign.fd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(foreign.fd, F_GETFD) & FD_CLOEXEC != 0)
        try runtime.start(key)
        // The guest (wasi-libc's preopen scan, then WASMLET_LISTEN_FDS) serves on it.
        let page = try SocketSupport.httpGet(port: foreign.port, path: "/files/page.txt")
        #expect(page.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(page.hasSuffix("\r\n\r\ninherited\n"))
        #expect(try SocketSupport.httpGet(port: foreign.port, path: "/exit").hasSuffix("bye\n"))
        #expect(try await runtime.wait(key).reason == .exited)
        #expect(SocketSupport.isRefused(port: foreign.port))
        #expect(try await eventually(every: .milliseconds(5)) { Self.isClosed(foreign.fd, was: identity) })
        _ = try runtime.delete(key)
    }

    @Test func inheritedListenersFollowTheOwnOnesInOrderInWasmletListenFds() async throws {
        let runtime = try Fixtures.makeRuntime()
        let directory = try Fixtures.temporaryDirectory()
        // Prints WASMLET_LISTEN_FDS and exits.
        let module = try runtime.loadModule(path: Fixtures.guest("echo"))
        let foreign = try (0..<2).map { _ in try Self.foreignListener() }
        let key = InstanceKey(namespace: "inherited", id: Fixtures.uniqueID())
        let stdout = directory.appendingPathComponent("out").path
        let snapshot = try runtime.create(
            InstanceSpec(
                key: key, moduleDigest: module.digest, args: ["echo"],
                preopens: [PreopenSpec(guestPath: "/d", hostPath: directory.path)], stdio: StdioSpec(stdout: stdout),
                listeners: [SocketTests.loopback], inheritedListeners: foreign.map { InheritedListener(adopting: $0.fd) }))
        #expect(snapshot.listeners.map(\.guestFd) == [4, 5, 6])
        #expect(snapshot.listeners.dropFirst().map(\.boundPort) == foreign.map(\.port))
        try runtime.start(key)
        #expect(try await runtime.wait(key).code == 0)
        let printed = (try? String(contentsOfFile: stdout, encoding: .utf8)) ?? ""
        #expect(printed.contains("env WASMLET_LISTEN_FDS=4,5,6\n"))
        #expect(foreign.allSatisfy { SocketSupport.isRefused(port: $0.port) })
        _ = try runtime.delete(key)
    }

    @Test func killAndDeleteOfANeverStartedInstanceCloseIt() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("httpd"))
        for kill in [true, false] {
            let foreign = try Self.foreignListener()
            let identity = Self.inode(foreign.fd)
            let key = InstanceKey(namespace: "inherited", id: Fixtures.uniqueID())
            _ = try runtime.create(
                InstanceSpec(key: key, moduleDigest: module.digest, inheritedListeners: [InheritedListener(adopting: foreign.fd)]))
            #expect(!SocketSupport.isRefused(port: foreign.port))  // open from create on
            if kill {
                try runtime.kill(key)
                #expect(SocketSupport.isRefused(port: foreign.port))
            }
            _ = try runtime.delete(key)
            #expect(SocketSupport.isRefused(port: foreign.port))
            #expect(try await eventually(every: .milliseconds(5)) { Self.isClosed(foreign.fd, was: identity) })
        }
    }

    @Test func everyFailedCreateClosesThemAndCloseAfterAdoptionDoesNothing() async throws {
        let runtime = try Fixtures.makeRuntime()
        let module = try runtime.loadModule(path: Fixtures.guest("httpd"))
        func attempt(_ adjust: (inout InstanceSpec) -> Void) throws -> (RuntimeError?, [(Int32, UInt64?)]) {
            let fds = try (0..<2).map { _ in try Self.foreignListener().fd }
            let identities = fds.map { ($0, Self.inode($0)) }
            var spec = InstanceSpec(
                key: InstanceKey(namespace: "inherited", id: Fixtures.uniqueID()), moduleDigest: module.digest,
                inheritedListeners: fds.map { InheritedListener(adopting: $0) })
            adjust(&spec)
            do {
                _ = try runtime.create(spec)
                return (nil, identities)
            } catch let error as RuntimeError {
                // The caller's failure path may close them again: a no-op, never a double close.
                for listener in spec.inheritedListeners { listener.close() }
                return (error, identities)
            }
        }
        // A module that is not loaded.
        let (missing, first) = try attempt { $0.moduleDigest = "sha256:" + String(repeating: "0", count: 64) }
        #expect(missing?.kind == .notFound)
        // A descriptor that is no listener, after a good one: both closed.
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        defer { close(ends[1]) }
        let pipeIdentity = Self.inode(ends[0])
        let (notListener, second) = try attempt { $0.inheritedListeners.insert(InheritedListener(adopting: ends[0]), at: 1) }
        #expect(notListener?.kind == .invalidArgument)
        #expect(notListener?.message.contains("is not a listening TCP socket") == true)
        // An own listener that cannot bind (port in use): the inherited ones are closed too.
        let busy = try Self.foreignListener()
        defer { close(busy.fd) }
        let (inUse, third) = try attempt { $0.listeners = [ListenerSpec(address: "127.0.0.1", port: busy.port)] }
        #expect(inUse?.message.contains("address already in use") == true)
        for (fd, identity) in first + second + third + [(ends[0], pipeIdentity)] {
            #expect(Self.isClosed(fd, was: identity))
        }
    }
}
