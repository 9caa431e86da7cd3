#if os(Linux)
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletSystemd

extension SystemdEnvironmentTests {
    /// The notifier against a real NOTIFY_SOCKET receiver: the exact datagrams systemd gets.
    @Suite struct SystemdNotifierTests {
        let notifier = SystemdNotifier()

        /// Runs `body` with NOTIFY_SOCKET pointing at a fresh receiver.
        func withReceiver(_ body: (NotifyReceiver) throws -> Void) throws {
            let receiver = try NotifyReceiver()
            try withEnvironment(["NOTIFY_SOCKET": receiver.path]) {
                #expect(SystemdNotifier.isConfigured)
                try body(receiver)
            }
        }

        @Test func readyStatusStoppingWatchdogSendExactDatagrams() throws {
            try withReceiver { receiver in
                #expect(notifier.ready())
                #expect(receiver.receive()?.text == "READY=1")

                #expect(notifier.ready(status: "serving 0 guests"))
                #expect(receiver.receive()?.text == "READY=1\nSTATUS=serving 0 guests")

                #expect(notifier.status("3 guests running"))
                #expect(receiver.receive()?.text == "STATUS=3 guests running")

                #expect(notifier.stopping())
                #expect(receiver.receive()?.text == "STOPPING=1")

                #expect(notifier.watchdog())
                #expect(receiver.receive()?.text == "WATCHDOG=1")

                #expect(notifier.extendTimeout(usec: 5_000_000))
                #expect(receiver.receive()?.text == "EXTEND_TIMEOUT_USEC=5000000")

                #expect(notifier.mainPID(4242))
                #expect(receiver.receive()?.text == "MAINPID=4242")

                // Nothing else was sent.
                #expect(receiver.receive(timeoutMilliseconds: 50) == nil)
            }
        }

        @Test func reloadingCarriesMonotonicTimestampInSameDatagram() throws {
            try withReceiver { receiver in
                let before = monotonicMicroseconds()
                #expect(notifier.reloading())
                let after = monotonicMicroseconds()

                let datagram = try #require(receiver.receive())
                let lines = datagram.text.split(separator: "\n", omittingEmptySubsequences: false)
                try #require(lines.count == 2, "got \(datagram.text.debugDescription)")
                #expect(lines[0] == "RELOADING=1")
                #expect(lines[1].hasPrefix("MONOTONIC_USEC="))
                let stamp = try #require(UInt64(lines[1].dropFirst("MONOTONIC_USEC=".count)))
                #expect(stamp >= before && stamp <= after, "\(stamp) not in [\(before), \(after)]")
            }
        }

        @Test func newlinesCannotForgeAssignments() throws {
            try withReceiver { receiver in
                #expect(notifier.status("line one\nREADY=1"))
                #expect(receiver.receive()?.text == "STATUS=line one READY=1")
                #expect(notifier.status("crlf\r\nSTOPPING=1"))
                #expect(receiver.receive()?.text == "STATUS=crlf\r STOPPING=1")
            }
        }

        @Test func sendPassesFileDescriptors() throws {
            try withReceiver { receiver in
                var pipeEnds: [Int32] = [0, 0]
                try #require(pipe(&pipeEnds) == 0)
                defer { close(pipeEnds[0]); close(pipeEnds[1]) }

                let outcome = notifier.send(["FDSTORE=1", "FDNAME=api"], fileDescriptors: [pipeEnds[1]])
                #expect(outcome == .sent)
                let datagram = try #require(receiver.receive())
                #expect(datagram.text == "FDSTORE=1\nFDNAME=api")
                try #require(datagram.fileDescriptors.count == 1)
                let passed = datagram.fileDescriptors[0]
                defer { close(passed) }

                // The passed descriptor is the pipe's write end: writing to it reaches ours.
                var byte: UInt8 = 0x2A
                #expect(write(passed, &byte, 1) == 1)
                var read: UInt8 = 0
                #expect(Glibc.read(pipeEnds[0], &read, 1) == 1)
                #expect(read == 0x2A)
            }
        }

        @Test func withoutNotifySocketEveryCallIsANoOpReturningFalse() throws {
            let receiver = try NotifyReceiver()
            withEnvironment(["NOTIFY_SOCKET": nil]) {
                #expect(!SystemdNotifier.isConfigured)
                #expect(!notifier.ready())
                #expect(!notifier.ready(status: "x"))
                #expect(!notifier.status("x"))
                #expect(!notifier.stopping())
                #expect(!notifier.reloading())
                #expect(!notifier.watchdog())
                #expect(!notifier.extendTimeout(usec: 1))
                #expect(!notifier.mainPID())
                #expect(notifier.send(["READY=1"]) == .notConfigured)
            }
            #expect(receiver.receive(timeoutMilliseconds: 50) == nil)
        }

        @Test func unreachableNotifySocketFailsWithoutThrowing() throws {
            let directory = try TemporaryDirectory(prefix: "wasmlet-sd")
            withEnvironment(["NOTIFY_SOCKET": directory.path + "/nobody-listens.sock"]) {
                #expect(!notifier.ready())
                let outcome = notifier.send(["READY=1"])
                guard case .failed(let error) = outcome else {
                    Issue.record("expected failure, got \(outcome)")
                    return
                }
                #expect(error == ENOENT || error == ECONNREFUSED)
            }
        }
    }
}
#endif
