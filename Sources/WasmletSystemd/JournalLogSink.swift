#if os(Linux)
import CSystemd
import Glibc

/// syslog(3) priorities, as the journal's `PRIORITY=` field uses them.
public enum JournalPriority: Int32, Sendable, CaseIterable, Comparable {
    case emergency = 0
    case alert = 1
    case critical = 2
    case error = 3
    case warning = 4
    case notice = 5
    case info = 6
    case debug = 7

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Writes structured entries to the systemd journal with `sd_journal_sendv`.
///
/// Why: a line on stderr becomes a journal entry with only `MESSAGE=`; sending natively
/// keeps per-entry fields such as `WASMLET_INSTANCE_ID=` and `WASMLET_NAMESPACE=`, so an
/// operator can run `journalctl WASMLET_INSTANCE_ID=…` for one guest. Use it when
/// ``isConnectedToJournal`` says stderr already goes to the journal (the daemon runs under
/// systemd); otherwise keep writing to stderr.
///
/// Threading: `send(message:priority:fields:)` may be called from any thread, including
/// guest threads; libsystemd opens one datagram socket on first use and shares it. Each
/// call is one `sendmsg` (a memfd for very large entries) and never throws.
public struct JournalLogSink: Sendable {
    /// `SYSLOG_IDENTIFIER=` added to every entry (what `journalctl -t` filters on);
    /// `nil` to leave it out.
    public let syslogIdentifier: String?

    public init(syslogIdentifier: String? = "wasmletd") {
        self.syslogIdentifier = syslogIdentifier
    }

    /// Sends one entry: `MESSAGE=message`, `PRIORITY=`, `SYSLOG_IDENTIFIER=` and `fields`.
    ///
    /// Field names are normalised to the journal's rules (upper-case `A-Z`, `0-9`, `_`, not
    /// starting with a digit or `_`, at most 64 characters): lower-case letters are
    /// upper-cased, other characters become `_`, and a name that is empty after that is
    /// dropped. `MESSAGE`, `PRIORITY` and `SYSLOG_IDENTIFIER` in `fields` are ignored in
    /// favour of the arguments. Values may hold any text, newlines included.
    ///
    /// - Returns: `true` when the entry was handed to journald; `false` when there is no
    ///   journal (e.g. in a container without journald) or the send failed.
    @discardableResult
    public func send(message: String, priority: JournalPriority, fields: [String: String] = [:]) -> Bool {
        let assignments = Self.entry(
            message: message, priority: priority, fields: fields, syslogIdentifier: syslogIdentifier
        )
        // Each assignment is copied into its own buffer; the iovecs point at those, and the
        // journal protocol uses their lengths, so values may contain newlines or NULs.
        let buffers = assignments.map { assignment -> UnsafeMutableRawBufferPointer in
            let bytes = Array(assignment.utf8)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
            buffer.copyBytes(from: bytes)
            return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<bytes.count])
        }
        defer { buffers.forEach { $0.deallocate() } }
        let vectors = buffers.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        let result = vectors.withUnsafeBufferPointer { vectors in
            sd_journal_sendv(vectors.baseAddress, Int32(vectors.count))
        }
        return result >= 0
    }

    /// The `FIELD=value` assignments of one entry, in the order they are sent:
    /// `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, then `fields` sorted by field name.
    static func entry(
        message: String,
        priority: JournalPriority,
        fields: [String: String],
        syslogIdentifier: String?
    ) -> [String] {
        var assignments = ["MESSAGE=\(message)", "PRIORITY=\(priority.rawValue)"]
        if let syslogIdentifier { assignments.append("SYSLOG_IDENTIFIER=\(syslogIdentifier)") }
        let reserved: Set<String> = ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER"]
        let extra = fields.compactMap { key, value -> (String, String)? in
            guard let name = fieldName(key), !reserved.contains(name) else { return nil }
            return (name, value)
        }
        for (name, value) in extra.sorted(by: { $0.0 < $1.0 }) {
            assignments.append("\(name)=\(value)")
        }
        return assignments
    }

    /// `key` normalised to a valid journal field name, or `nil` if nothing is left.
    static func fieldName(_ key: String) -> String? {
        var name = String(key.unicodeScalars.map { scalar -> Character in
            switch scalar {
            case "A"..."Z", "0"..."9", "_": Character(scalar)
            case "a"..."z": Character(Unicode.Scalar(scalar.value - 32)!)
            default: "_"
            }
        })
        // A leading underscore marks fields only journald may set (it drops them from
        // clients); a leading digit is invalid.
        while let first = name.first, first == "_" || first.isNumber {
            name.removeFirst()
        }
        if name.count > 64 { name = String(name.prefix(64)) }
        return name.isEmpty ? nil : name
    }

    /// `true` when stderr is connected to the journal, i.e. `JOURNAL_STREAM` holds the
    /// device and inode numbers (`<dev>:<ino>`, decimal) of the stream on file descriptor 2,
    /// as systemd.exec(5) documents. A redirected stderr (`2>file`, a pipe to another
    /// logger) no longer matches, even though the variable is still inherited.
    /// Reads the environment: call it at start-up, not concurrently with `setenv`.
    public static var isConnectedToJournal: Bool {
        guard let raw = getenv("JOURNAL_STREAM") else { return false }
        let value = String(cString: raw)
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else {
            return false
        }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}
#endif
