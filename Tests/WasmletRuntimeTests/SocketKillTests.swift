import Foundation
import Glibc
import Testing
@testable import WasmletRuntime

/// A guest blocked in accept, recv, send or poll is killed like a sleeping one: the kill lands
/// (the exit says "killed by signal 9", not that the thread was abandoned, which the tests'
/// 120 s escalation timeout would take long to reach). How long each took, from the kill to
/// the exit delivered to `wait`, is printed beside a sleeper's; nothing asserts on time.
@Suite struct SocketKillTests {
    enum Call: String, CaseIterable, Sendable {
        case accept, recv, send, poll, sleep
    }

    static func body(_ call: Call) -> String {
        switch call {
        case .accept:
            return "(drop (call $accept (i32.const 3) (i32.const 0) (i32.const 0)))"
        case .recv:
            return """
                (drop (call $accept (i32.const 3) (i32.const 0) (i32.const 0)))
                (drop (call $recv (i32.load (i32.const 0)) (call $iov (i32.const 2048) (i32.const 16)) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)))
                """
        case .send:
            // The client never reads: the socket buffers fill and a blocking send waits.
            return """
                (drop (call $accept (i32.const 3) (i32.const 0) (i32.const 0)))
                (loop $again
                  (br_if $again (i32.eqz (call $send (i32.load (i32.const 0)) (call $iov (i32.const 0) (i32.const 65536)) (i32.const 1) (i32.const 0) (i32.const 32))))
                )
                """
        case .poll:
            return """
                (call $subfd (i32.const 0) (i32.const 1) (i32.const 3))
                (drop (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 32)))
                """
        case .sleep:
            return """
                (call $subclock (i32.const 0) (i64.const 600000000000))
                (drop (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 32)))
                """
        }
    }

    @Test(arguments: Call.allCases)
    func killLandsOnAGuestBlockedIn(_ call: Call) async throws {
        let runtime = try Fixtures.makeRuntime()
        let digest = try runtime.loadModule(bytes: Fixtures.wat(SocketSupport.guest(Self.body(call) + "\n(call $exit (i32.const 0))"))).digest
        var client: Int32 = -1
        let started = try SocketTests.start(runtime, digest: digest) { ports in
            if call == .recv || call == .send { client = try SocketSupport.connect(port: ports[0]) }
        }
        defer { if client >= 0 { close(client) } }
        try await SocketTests.waitUntilBlocked(runtime)
        let clock = ContinuousClock()
        let killedAt = clock.now
        try runtime.kill(started.key)
        let exit = try await runtime.wait(started.key)
        let elapsed = clock.now - killedAt
        #expect(exit.reason == .killed)
        #expect(exit.message == "killed by signal 9")
        #expect(runtime.statistics().guestsBlockedInHostCalls == 0)
        print("kill of a guest blocked in \(call.rawValue): \(elapsed) from kill to exit")
    }
}
