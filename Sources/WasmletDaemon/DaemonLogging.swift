import Foundation
import Logging
import Synchronization

/// The daemon's log output: swift-log lines on stderr (the journal picks them up under
/// systemd), e.g.
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

struct DaemonLogHandler: LogHandler {
    let label: String
    let levelBox: LogLevelBox
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    var logLevel: Logger.Level {
        get { levelBox.value }
        set { levelBox.value = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let lock = Mutex(())

    func log(event: LogEvent) {
        var all = self.metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        if let error = event.error { all["error"] = "\(error)" }
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

enum DaemonLogging {
    /// Installs the handler process-wide; call once, first thing in the daemon.
    static func bootstrap(level: Logger.Level) -> LogLevelBox {
        let box = LogLevelBox(level)
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, levelBox: box) }
        return box
    }
}
