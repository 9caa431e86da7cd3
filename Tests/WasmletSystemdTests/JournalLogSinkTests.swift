#if os(Linux)
import Foundation
import Glibc
import Testing
import WasmletTestSupport
@testable import WasmletSystemd

/// Field naming and entry layout: pure, no journal needed.
@Suite struct JournalEntryTests {
    @Test func fieldNamesAreNormalisedToJournalRules() {
        #expect(JournalLogSink.fieldName("WASMLET_INSTANCE_ID") == "WASMLET_INSTANCE_ID")
        #expect(JournalLogSink.fieldName("wasmlet_namespace") == "WASMLET_NAMESPACE")
        #expect(JournalLogSink.fieldName("wasmlet.exit-code") == "WASMLET_EXIT_CODE")
        #expect(JournalLogSink.fieldName("_PID") == "PID")  // trusted fields cannot be forged
        #expect(JournalLogSink.fieldName("9LIVES") == "LIVES")
        #expect(JournalLogSink.fieldName("__") == nil)
        #expect(JournalLogSink.fieldName("") == nil)
        #expect(JournalLogSink.fieldName(String(repeating: "A", count: 80))?.count == 64)
    }

    @Test func entryPutsMessagePriorityIdentifierFirstThenSortedFields() {
        let entry = JournalLogSink.entry(
            message: "guest started",
            priority: .info,
            fields: ["wasmlet_namespace": "k8s.io", "WASMLET_INSTANCE_ID": "abc", "PRIORITY": "0", "message": "x"],
            syslogIdentifier: "wasmletd"
        )
        #expect(entry == [
            "MESSAGE=guest started",
            "PRIORITY=6",
            "SYSLOG_IDENTIFIER=wasmletd",
            "WASMLET_INSTANCE_ID=abc",
            "WASMLET_NAMESPACE=k8s.io",
        ])
    }

    @Test func priorityValuesAreSyslogs() {
        #expect(JournalPriority.allCases.map(\.rawValue) == Array(0...7))
        #expect(JournalPriority.error < .warning)
    }
}

/// Decodes journald's native protocol: `NAME=value\n`, or for values with newlines
/// `NAME\n<64-bit little-endian length><value>\n`.
func decodeJournalDatagram(_ bytes: [UInt8]) -> [(String, String)]? {
    var fields: [(String, String)] = []
    var index = 0
    while index < bytes.count {
        guard let end = bytes[index...].firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "=") }) else {
            return nil
        }
        let name = String(decoding: bytes[index..<end], as: UTF8.self)
        if bytes[end] == UInt8(ascii: "=") {
            guard let newline = bytes[end...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            fields.append((name, String(decoding: bytes[(end + 1)..<newline], as: UTF8.self)))
            index = newline + 1
        } else {
            guard end + 9 <= bytes.count else { return nil }
            var length = 0
            for (shift, byte) in bytes[(end + 1)..<(end + 9)].enumerated() { length |= Int(byte) << (8 * shift) }
            let start = end + 9
            guard start + length < bytes.count, bytes[start + length] == UInt8(ascii: "\n") else { return nil }
            fields.append((name, String(decoding: bytes[start..<(start + length)], as: UTF8.self)))
            index = start + length + 1
        }
    }
    return fields
}

func hexBytes(_ hex: Substring) -> [UInt8]? {
    guard hex.count % 2 == 0 else { return nil }
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
        bytes.append(byte)
        index = next
    }
    return bytes
}

/// Whether this machine lets us make a private mount namespace (root, or a container
/// that allows unshare): needed to give the probe its own /run/systemd/journal/socket.
func canUnshareMountNamespace() -> Bool {
    guard let unshare = executableOnPath("unshare") else { return false }
    // A trait's condition is synchronous: the blocking wait is for a child that exits at once.
    let child = try? ChildProcess(
        unshare, ["--mount", "--propagation", "private", "true"], environment: ProcessInfo.processInfo.environment)
    return child?.waitBlocking() == .exited(0)
}

extension SystemdEnvironmentTests {
    @Suite struct JournalStreamTests {
        @Test func journalStreamMustMatchStderrDeviceAndInode() throws {
            var info = stat()
            try #require(fstat(STDERR_FILENO, &info) == 0)
            let device = UInt64(info.st_dev)
            let inode = UInt64(info.st_ino)
            withEnvironment(["JOURNAL_STREAM": "\(device):\(inode)"]) {
                #expect(JournalLogSink.isConnectedToJournal)
            }
            withEnvironment(["JOURNAL_STREAM": "\(device):\(inode + 1)"]) {
                #expect(!JournalLogSink.isConnectedToJournal)
            }
            withEnvironment(["JOURNAL_STREAM": "\(device)"]) {
                #expect(!JournalLogSink.isConnectedToJournal)
            }
            withEnvironment(["JOURNAL_STREAM": nil]) {
                #expect(!JournalLogSink.isConnectedToJournal)
            }
        }

        /// The probe, in a private mount namespace with a tmpfs /run, binds its own
        /// /run/systemd/journal/socket and reports what sd_journal_sendv put on the wire.
        @Test(.enabled(if: canUnshareMountNamespace(), "needs unshare --mount (root)"))
        func sendWritesTheNativeJournalProtocol() async throws {
            let unshare = try #require(executableOnPath("unshare"))
            let script = #"mount -t tmpfs tmpfs /run && exec "$0" journal-roundtrip"#
            let (status, output) = try await SpawnedTool.run(
                unshare, ["--mount", "--propagation", "private", "sh", "-c", script, probePath]
            )
            #expect(status == 0, "\(output)")
            let lines = output.split(separator: "\n")
            #expect(lines.contains("sent=1"), "\(output)")
            let hex = try #require(lines.first { $0.hasPrefix("datagram=") }?.dropFirst("datagram=".count))
            let bytes = try #require(hexBytes(hex))
            let fields = try #require(decodeJournalDatagram(bytes))
            #expect(fields.map(\.0) == [
                "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "WASMLET_INSTANCE_ID", "WASMLET_NAMESPACE",
            ])
            #expect(fields.map(\.1) == ["guest exited\nwith code 3", "4", "wasmlet-sd-probe", "inst-42", "k8s.io"])
        }
    }
}
#endif
