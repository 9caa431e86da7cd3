import Foundation
import Logging
import Synchronization
import WasmletSystemd

/// The daemon's log output, through swift-log:
/// - under systemd, when stderr is the journal (`JOURNAL_STREAM` names fd 2), native journal
///   entries (`JournalLogHandler`): MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=wasmletd, CODE_* and
///   every metadata key as a field `WASMLET_<KEY>`, so `journalctl WASMLET_ID=web-1` finds one
///   instance's entries (`WASMLET_NAMESPACE`, `WASMLET_REASON`, `WASMLET_CODE`, ...);
/// - otherwise lines on stderr, e.g.
///   2025-01-01T12:00:00.123Z info wasmletd: instance exited [code=0 id=web-1 namespace=default reason=exited]
/// The level lives in one shared box so a SIGHUP reload changes it for every logger at once.
final class LogLevelBox: Sendable {
    private let level: Mutex<Logger.Level>
    init(_ level: Logger.Level) { self.level = Mutex(level) }
    var value: Logger.Level {
        get { level.withLock { $0 } }
        set { level.withLock { $0 = newValue } }
    }
}

/// The level and metadata plumbing both of the daemon's handlers share: one level for every
/// logger (SIGHUP changes it in `LogLevelBox`), metadata per logger.
protocol LevelBoxLogHandler: LogHandler {
    var levelBox: LogLevelBox { get }
    var metadata: Logger.Metadata { get set }
}

extension LevelBoxLogHandler {
    var logLevel: Logger.Level {
        get { levelBox.value }
        set { levelBox.value = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}

struct DaemonLogHandler: LevelBoxLogHandler {
    let label: String
    let levelBox: LogLevelBox
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    private static let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let lock = Mutex(())

    func log(event: LogEvent) {
        let all = DaemonLogging.metadata(of: event, handler: metadata, provider: metadataProvider)
        var text = "\(Date().formatted(Self.dateStyle)) \(event.level) \(label): \(event.message)"
        if !all.isEmpty {
            text += " [" + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "]"
        }
        text += "\n"
        // One write(2) per line, serialised, so lines from many threads never interleave.
        Self.lock.withLock { _ in
            FileHandle.standardError.write(Data(text.utf8))
        }
    }
}

/// Sends each entry to the journal with its metadata as fields; an entry the journal refuses
/// (journald gone) is written to stderr instead, so nothing is lost silently.
struct JournalLogHandler: LevelBoxLogHandler {
    let label: String
    let levelBox: LogLevelBox
    let sink: JournalLogSink
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    func log(event: LogEvent) {
        let all = DaemonLogging.metadata(of: event, handler: metadata, provider: metadataProvider)
        var fields = Self.fields(all)
        fields["CODE_FILE"] = event.file
        fields["CODE_LINE"] = "\(event.line)"
        fields["CODE_FUNC"] = event.function
        if !sink.send(message: "\(event.message)", priority: Self.priority(event.level), fields: fields) {
            var fallback = DaemonLogHandler(label: label, levelBox: levelBox, metadata: metadata)
            fallback.metadataProvider = metadataProvider
            fallback.log(event: event)
        }
    }

    /// Metadata key `k` becomes the field `WASMLET_K` (upper case; characters the journal does
    /// not allow in names become `_`, see `JournalLogSink.fieldName`).
    static func fields(_ metadata: Logger.Metadata) -> [String: String] {
        var fields: [String: String] = [:]
        for (key, value) in metadata { fields["WASMLET_" + key] = "\(value)" }
        return fields
    }

    static func priority(_ level: Logger.Level) -> JournalPriority {
        switch level {
        case .trace, .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}

enum DaemonLogging {
    /// Installs the handler process-wide; call once, first thing in the daemon. Native journal
    /// entries when stderr is the journal, else lines on stderr.
    static func bootstrap(level: Logger.Level) -> LogLevelBox {
        let box = LogLevelBox(level)
        if JournalLogSink.isConnectedToJournal {
            let sink = JournalLogSink(syslogIdentifier: "wasmletd")
            LoggingSystem.bootstrap { label in JournalLogHandler(label: label, levelBox: box, sink: sink) }
        } else {
            LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, levelBox: box) }
        }
        return box
    }

    /// The handler's metadata, then the provider's, then the event's own (later wins), and the
    /// error if any.
    static func metadata(
        of event: LogEvent, handler: Logger.Metadata, provider: Logger.MetadataProvider?
    ) -> Logger.Metadata {
        var all = handler
        if let provided = provider?.get() { all.merge(provided) { $1 } }
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        if let error = event.error { all["error"] = "\(error)" }
        return all
    }
}
