import Foundation
import Glibc
import Synchronization
import WasmletRuntime

/// Durable instance records: `<state-dir>/instances/<namespace>/<id>.json`, one per instance.
///
/// Why one file per instance: a write touches one small file, so a crash can corrupt at most
/// the record being written (and atomic replacement prevents even that), and thousands of
/// instances do not mean rewriting one big file on every state change.
///
/// Each write is atomic and durable: write a temporary file, fsync it, rename it over the
/// record, fsync the directory. After a crash a record is either the old or the new version.
///
/// Ordering: records are written both by API handlers (synchronously, so a failed write can
/// fail the request) and from the runtime's event callback (which arrives later, on the
/// runtime's lifecycle queue). A per-key table of (serial, stage) makes the writes monotonic:
/// a late `created` event never overwrites a newer `exited` record, and an event of a deleted
/// instance never resurrects its file. Serials grow within a daemon's life, so a record of a
/// newer instance with the same key always wins.
final class InstanceStore: Sendable {
    enum StoreError: Error, CustomStringConvertible {
        case io(String)
        var description: String { if case .io(let message) = self { message } else { "" } }
    }

    /// How far an instance got; writes only move forward.
    private enum Stage: Int, Comparable {
        case created = 0, running, exited, deleted
        static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
        init(_ state: InstanceSnapshot.State) {
            switch state {
            case .created: self = .created
            case .running: self = .running
            case .exited: self = .exited
            }
        }
    }

    private struct Entry {
        var serial: UInt32
        var stage: Stage
    }

    let directory: String
    /// Striped locks: writes of one key are serialised (and ordered), writes of different keys
    /// proceed in parallel, which matters when hundreds of clients create at once.
    private let stripes: [Stripe]

    private final class Stripe: Sendable {
        let entries = Mutex<[InstanceKey: Entry]>([:])
    }

    init(stateDirectory: String) throws {
        directory = stateDirectory + "/instances"
        stripes = (0..<64).map { _ in Stripe() }
        try Self.makeDirectory(stateDirectory, mode: 0o700)
        try Self.makeDirectory(directory, mode: 0o700)
    }

    private func stripe(for key: InstanceKey) -> Stripe {
        var hasher = Hasher()
        hasher.combine(key)
        return stripes[Int(UInt(bitPattern: hasher.finalize()) % UInt(stripes.count))]
    }

    func path(for key: InstanceKey) -> String {
        directory + "/" + RecordFileName.component(key.namespace) + "/" + RecordFileName.component(key.id) + ".json"
    }

    // MARK: Recovery

    /// What recovery found: the records (running/created ones already turned into
    /// daemon_restarted exits and rewritten) and files it could not read, which it renamed to
    /// `*.corrupt` so an operator can look at them and they are never silently reused.
    struct Recovery {
        var instances: [PersistedInstance] = []
        var markedExited: [PersistedInstance] = []
        var unreadable: [(path: String, reason: String)] = []
    }

    /// Reads every record. Must run before the API is served (nothing else writes meanwhile).
    func recover() throws -> Recovery {
        var recovery = Recovery()
        let manager = FileManager.default
        let namespaces = try contents(of: directory)
        for namespaceName in namespaces {
            let namespaceDirectory = directory + "/" + namespaceName
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: namespaceDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                continue
            }
            for fileName in try contents(of: namespaceDirectory) {
                let filePath = namespaceDirectory + "/" + fileName
                if fileName.hasPrefix(".tmp-") {
                    // A write the previous daemon did not finish; the record it was replacing
                    // (if any) is intact.
                    unlink(filePath)
                    continue
                }
                guard fileName.hasSuffix(".json") else { continue }
                let record: PersistedInstance
                do {
                    let data = try Data(contentsOf: URL(fileURLWithPath: filePath))
                    record = try Self.decoder.decode(PersistedInstance.self, from: data)
                    guard record.version <= PersistedInstance.currentVersion else {
                        throw StoreError.io("record version \(record.version) is newer than this daemon understands")
                    }
                } catch {
                    rename(filePath, filePath + ".corrupt")
                    recovery.unreadable.append((filePath, "\(error)"))
                    continue
                }
                var current = record.recovered()
                if current != record {
                    try write(current, to: path(for: current.key))
                    recovery.markedExited.append(current)
                }
                current.serial = 0
                stripe(for: current.key).entries.withLock { $0[current.key] = Entry(serial: 0, stage: .exited) }
                recovery.instances.append(current)
            }
        }
        return recovery
    }

    // MARK: Writes

    /// Persists `record` unless a newer state of the same instance (or of a newer instance with
    /// the same key) is already on disk. Throws when the record cannot be made durable.
    func persist(_ record: PersistedInstance) throws {
        let key = record.key
        let stage = Stage(record.state)
        try stripe(for: key).entries.withLock { entries in
            if let entry = entries[key] {
                if entry.serial > record.serial { return }
                if entry.serial == record.serial, entry.stage >= stage { return }
            }
            try write(record, to: path(for: key))
            entries[key] = Entry(serial: record.serial, stage: stage)
        }
    }

    /// Removes the record of instance `serial` (0 for a recovered one) and remembers the deletion
    /// so a late event for it does not bring the file back.
    func remove(_ key: InstanceKey, serial: UInt32) throws {
        try stripe(for: key).entries.withLock { entries in
            if let entry = entries[key], entry.serial > serial { return }
            let file = path(for: key)
            if unlink(file) != 0, errno != ENOENT {
                throw StoreError.io("cannot remove \(file): \(String(cString: strerror(errno)))")
            }
            try Self.syncDirectory((file as NSString).deletingLastPathComponent)
            entries[key] = Entry(serial: serial, stage: .deleted)
        }
    }

    /// The runtime delivered the deleted event: every earlier event of that instance has been
    /// handled, so its tombstone is no longer needed.
    func forgetTombstone(_ key: InstanceKey) {
        stripe(for: key).entries.withLock { entries in
            if entries[key]?.stage == .deleted { entries[key] = nil }
        }
    }

    /// Whether the exit of instance `serial` is on disk (or the instance is gone).
    func hasPersistedExit(_ key: InstanceKey, serial: UInt32) -> Bool {
        stripe(for: key).entries.withLock { entries in
            guard let entry = entries[key] else { return false }
            return entry.serial > serial || entry.stage >= .exited
        }
    }

    // MARK: Files

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601WithFractionalSeconds
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601WithFractionalSeconds
        return decoder
    }()

    /// Write temp, fsync, rename, fsync directory.
    private func write(_ record: PersistedInstance, to file: String) throws {
        let data: Data
        do {
            data = try Self.encoder.encode(record)
        } catch {
            throw StoreError.io("cannot encode the record of \(record.key): \(error)")
        }
        let directoryPath = (file as NSString).deletingLastPathComponent
        try Self.makeDirectory(directoryPath, mode: 0o700)
        let temporary = directoryPath + "/.tmp-" + (file as NSString).lastPathComponent + "-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.failure("cannot create \(temporary)") }
        var ok = false
        defer {
            if !ok { unlink(temporary) }
        }
        do {
            defer { close(fd) }
            try data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let written = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw Self.failure("cannot write \(temporary)")
                    }
                    offset += written
                }
            }
            guard fsync(fd) == 0 else { throw Self.failure("cannot fsync \(temporary)") }
        }
        guard rename(temporary, file) == 0 else { throw Self.failure("cannot rename \(temporary) to \(file)") }
        ok = true
        try Self.syncDirectory(directoryPath)
    }

    private static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open directory \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot fsync directory \(path)") }
    }

    /// mkdir that tolerates an existing directory and makes a new one durable in its parent.
    private static func makeDirectory(_ path: String, mode: mode_t) throws {
        if mkdir(path, mode) == 0 {
            try syncDirectory((path as NSString).deletingLastPathComponent)
            return
        }
        if errno == EEXIST { return }
        if errno == ENOENT {
            try makeDirectory((path as NSString).deletingLastPathComponent, mode: 0o755)
            try makeDirectory(path, mode: mode)
            return
        }
        throw failure("cannot create directory \(path)")
    }

    private func contents(of path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw StoreError.io("cannot list \(path): \(error.localizedDescription)")
        }
    }

    private static func failure(_ what: String) -> StoreError {
        .io("\(what): \(String(cString: strerror(errno)))")
    }
}

/// ISO 8601 with milliseconds and a "Z": readable in the file, and precise enough for the
/// timestamps reported back over the API.
private let recordDateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

extension JSONEncoder.DateEncodingStrategy {
    static var iso8601WithFractionalSeconds: Self {
        .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(recordDateStyle))
        }
    }
}

extension JSONDecoder.DateDecodingStrategy {
    static var iso8601WithFractionalSeconds: Self {
        .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? recordDateStyle.parse(text) { return date }
            if let date = try? Date.ISO8601FormatStyle().parse(text) { return date }
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 date: \(text)")
        }
    }
}
