import Foundation
import Glibc
import Logging
import Synchronization
import WasmletRuntime

/// Durable instance records: `<state-dir>/instances/<namespace>/<id>.json`, one per instance,
/// made durable through a write-ahead journal with group commit.
///
/// Why one file per instance: an operator (or a test) can read a record with `cat`, a crash
/// can damage at most the file being written, and thousands of instances do not mean
/// rewriting one big file on every state change.
///
/// Why a journal: an fsync'd file per state change (temp file, fsync, rename, fsync of the
/// directory) costs two to four journal commits of the file system, one caller at a time. Here
/// every write goes to one writer thread, which takes everything queued since its last round
/// (a batch), appends it to `journal-<generation>.wal` (see `JournalFile`) with a single
/// `fdatasync`, and then tells the callers. So concurrent callers share one flush. The
/// per-instance files follow a little later (written in place, no fsync; see `JournalWriter`
/// for when), except removals, which are done before a Delete is answered.
///
/// Durability: a write is acknowledged only after the `fdatasync` of the batch holding it; an
/// error there (or in opening a new journal file) fails every write of the batch, and the
/// caller sees it. A per-instance file that cannot be updated after its batch is durable does
/// not fail the caller (the journal has the record); the writer retries it, and carries its
/// record into every new journal generation until the file is right.
///
/// Writes nobody waits for (the runtime's events, Start's running record) are queued in the
/// background: they do not start a batch of their own but go with the next one a caller waits
/// for, or after 10 ms, so a create/start/run/delete costs two flushes, not four.
///
/// Checkpoints: when a generation passes `rotationBytes` the writer starts a new one and a
/// checkpoint thread fsyncs the per-instance files and directories the old one touched, then
/// deletes it. Recovery therefore reads the per-instance files and replays the journals left on
/// disk over them, oldest first; a file that the crash tore (written, not yet fsync'd) is
/// always covered by a journal that has its record.
///
/// Ordering: records are written both by API handlers (which wait for them, so a failed write
/// can fail the request) and from the runtime's event callback (which arrives later, on the
/// runtime's lifecycle queue, and does not wait). A per-key table of (serial, stage) makes the
/// writes monotonic: a late `created` event never overwrites a newer `exited` record, and an
/// event of a deleted instance never resurrects its file. The check and the hand-over to the
/// writer happen under one lock, the writer keeps the order it was given (within a batch the
/// last write of a file wins), and the journal is replayed in that order.
package final class InstanceStore: Sendable {
    typealias StoreError = WasmletStore.StoreError

    /// How far an instance got; writes only move forward.
    fileprivate enum Stage: Int, Comparable {
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
        /// The newest stage handed to the writer.
        var stage: Stage
        /// The newest stage of this serial known to be on disk.
        var durable: Stage?
        /// How the write of `stage` ended, or the callers waiting for it.
        var outcome: Outcome
    }

    /// The outcome of one queued write, for callers whose own write was superseded by it.
    private final class Outcome: Sendable {
        private let state = Mutex<(done: Bool, error: (any Error)?, waiters: [@Sendable ((any Error)?) -> Void])>(
            (false, nil, []))

        static var succeeded: Outcome {
            let outcome = Outcome()
            outcome.resolve(nil)
            return outcome
        }

        /// Calls `completion` with the outcome, now or when it is known.
        func wait(_ completion: @escaping @Sendable ((any Error)?) -> Void) {
            let known = state.withLock { state -> (any Error)?? in
                if state.done { return .some(state.error) }
                state.waiters.append(completion)
                return .none
            }
            if case .some(let error) = known { completion(error) }
        }

        func resolve(_ error: (any Error)?) {
            let waiters = state.withLock { state in
                state.done = true
                state.error = error
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter(error) }
        }
    }

    /// `<state-dir>/instances`.
    let directory: String
    let stateDirectory: String
    /// Striped locks: writes of one key are checked and queued in order, writes of different
    /// keys do not contend, which matters when hundreds of clients create at once.
    private let stripes: [Stripe]
    private let writer: JournalWriter

    private final class Stripe: Sendable {
        let entries = Mutex<[InstanceKey: Entry]>([:])
    }

    /// - Parameter rotationBytes: journal size after which a new generation is started and the
    ///   old one checkpointed into the per-instance files.
    /// - Parameter clock: what the writer measures its delays on (tests inject their own).
    package init(
        stateDirectory: String, logger: Logger = Logger(label: "wasmletd"), rotationBytes: Int = 8 << 20,
        clock: any WriterClock = MonotonicWriterClock()
    ) throws {
        self.stateDirectory = stateDirectory
        directory = stateDirectory + "/instances"
        stripes = (0..<64).map { _ in Stripe() }
        try StoreFiles.makeDirectory(stateDirectory, mode: 0o700)
        try StoreFiles.makeDirectory(directory, mode: 0o700)
        writer = try JournalWriter(
            stateDirectory: stateDirectory, instancesDirectory: directory, rotationBytes: rotationBytes, logger: logger,
            clock: clock)
    }

    private func stripe(for key: InstanceKey) -> Stripe {
        var hasher = Hasher()
        hasher.combine(key)
        return stripes[Int(UInt(bitPattern: hasher.finalize()) % UInt(stripes.count))]
    }

    func path(for key: InstanceKey) -> String {
        directory + "/" + RecordFileName.component(key.namespace) + "/" + RecordFileName.component(key.id) + ".json"
    }

    private func namespaceDirectory(for key: InstanceKey) -> String {
        directory + "/" + RecordFileName.component(key.namespace)
    }

    // MARK: Recovery

    /// What recovery found: the records (running/created ones already turned into
    /// daemon_restarted exits and rewritten) and files it could not read, which it renamed to
    /// `*.corrupt` so an operator can look at them and they are never silently reused.
    package struct Recovery {
        package var instances: [PersistedInstance] = []
        package var markedExited: [PersistedInstance] = []
        package var unreadable: [(path: String, reason: String)] = []
    }

    /// Reads every record and replays the journals over them, then writes what changed (the
    /// replayed records, the daemon_restarted exits) into a fresh journal generation and deletes
    /// the old ones. Must run before the API is served (nothing else writes meanwhile).
    package func recover() throws -> Recovery {
        var recovery = Recovery()
        let manager = FileManager.default
        var records: [String: PersistedInstance] = [:]
        var unreadable: [String: String] = [:]
        // Names with a leading '.' are not namespaces (RecordFileName encodes one): `.free` holds
        // spare files (see JournalWriter).
        for namespaceName in try contents(of: directory) where !namespaceName.hasPrefix(".") {
            let namespaceDirectory = directory + "/" + namespaceName
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: namespaceDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                continue
            }
            for fileName in try contents(of: namespaceDirectory) {
                let filePath = namespaceDirectory + "/" + fileName
                if fileName.hasPrefix(".tmp-") {
                    // Left by daemons before 4c2383f, which wrote records through a temporary
                    // file and a rename (nothing writes these now): an unfinished write whose
                    // record, if any, is intact under its own name.
                    unlink(filePath)
                    continue
                }
                guard fileName.hasSuffix(".json") else { continue }
                do {
                    let record = try Self.decodeRecord(Data(contentsOf: URL(fileURLWithPath: filePath)))
                    records[filePath] = record
                } catch {
                    unreadable[filePath] = "\(error)"
                }
            }
        }

        // Replay the journals, oldest first; a later entry for a file wins.
        enum Replayed {
            case put(PersistedInstance)
            case remove(InstanceKey)
        }
        var replayed: [String: Replayed] = [:]
        var corruptJournals: [String] = []
        let journals = writer.existingGenerations()
        for (generation, journalPath) in journals {
            let bytes: [UInt8]
            do {
                bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: journalPath)))
            } catch {
                throw StoreError.io("cannot read \(journalPath): \(error.localizedDescription)")
            }
            for frame in JournalFile.frames(in: bytes, generation: generation) {
                do {
                    switch frame.kind {
                    case .put:
                        let record = try Self.decodeRecord(Data(frame.body))
                        replayed[path(for: record.key)] = .put(record)
                    case .remove:
                        let key = try Self.decoder.decode(RemovedKey.self, from: Data(frame.body))
                        let instanceKey = InstanceKey(namespace: key.namespace, id: key.id)
                        replayed[path(for: instanceKey)] = .remove(instanceKey)
                    case .header:
                        break
                    }
                } catch {
                    if !corruptJournals.contains(journalPath) {
                        corruptJournals.append(journalPath)
                        recovery.unreadable.append((journalPath, "an entry cannot be read: \(error)"))
                    }
                }
            }
        }
        for (filePath, entry) in replayed {
            unreadable[filePath] = nil
            switch entry {
            case .put(let record): records[filePath] = record
            case .remove: records[filePath] = nil
            }
        }
        for (filePath, reason) in unreadable.sorted(by: { $0.key < $1.key }) {
            rename(filePath, filePath + ".corrupt")
            recovery.unreadable.append((filePath, reason))
        }

        // What to write again: everything the journals held, and the instances that were
        // created or running when the previous daemon died.
        var rewrites: [JournalWriter.Operation] = []
        for (filePath, record) in records.sorted(by: { $0.key < $1.key }) {
            var current = record.recovered()
            if current != record { recovery.markedExited.append(current) }
            if current != record || replayed[filePath] != nil {
                rewrites.append(operation(put: current))
            }
            current.serial = 0
            let key = current.key
            stripe(for: key).entries.withLock {
                $0[key] = Entry(serial: 0, stage: .exited, durable: .exited, outcome: .succeeded)
            }
            recovery.instances.append(current)
        }
        for (_, entry) in replayed.sorted(by: { $0.key < $1.key }) {
            if case .remove(let key) = entry { rewrites.append(operation(remove: key)) }
        }
        try writer.recoveryCommit(rewrites, superseding: journals.map(\.path), setAside: corruptJournals)
        return recovery
    }

    private struct RemovedKey: Codable {
        var namespace: String
        var id: String
    }

    private static func decodeRecord(_ data: Data) throws -> PersistedInstance {
        let record = try decoder.decode(PersistedInstance.self, from: data)
        guard record.version <= PersistedInstance.currentVersion else {
            throw StoreError.io("record version \(record.version) is newer than this daemon understands")
        }
        return record
    }

    // MARK: Writes

    /// Whether a write of `state` (or of a later state) of instance `serial` is already written
    /// or queued, or a newer instance owns the key: then persisting that state would change
    /// nothing. Lets the event recorder skip building and encoding records that `persist` would
    /// drop (the created and started events usually follow the request that wrote them).
    package func hasRecord(_ key: InstanceKey, serial: UInt32, state: InstanceSnapshot.State) -> Bool {
        stripe(for: key).entries.withLock { entries in
            guard let entry = entries[key] else { return false }
            return entry.serial > serial || (entry.serial == serial && entry.stage >= Stage(state))
        }
    }

    /// Persists `record` unless a newer state of the same instance (or of a newer instance with
    /// the same key) is already written or queued, and calls `completion` (on the writer thread;
    /// keep it short) once the record is durable, or with the error that kept it from being so.
    ///
    /// When an equal or newer state of the same instance was queued first (the runtime's event
    /// can beat the request that caused it), `waitForNewer` decides: true completes with the
    /// outcome of that write (a request must not answer before what it reports is on disk, nor
    /// succeed if that write failed), false completes at once (the event recorder waits for
    /// nothing).
    ///
    /// `background` (for writes nobody waits for, which must not cost a flush of their own):
    /// the record goes with the next batch someone waits for, or within
    /// `JournalWriter.backgroundDelay` (10 ms).
    package func persist(
        _ record: PersistedInstance, waitForNewer: Bool = true, background: Bool = false,
        completion: @escaping @Sendable ((any Error)?) -> Void
    ) {
        let key = record.key
        let serial = record.serial
        let stage = Stage(record.state)
        let outcome = Outcome()
        var operation = operation(put: record)
        operation.completion = { [self] error in
            settle(key, serial: serial, stage: stage, failed: error != nil)
            outcome.resolve(error)
            completion(error)
        }
        let superseding = stripe(for: key).entries.withLock { entries -> Outcome? in
            if let entry = entries[key] {
                // A newer instance owns the key: this one's record is gone for good.
                if entry.serial > serial { return .succeeded }
                if entry.serial == serial, entry.stage >= stage { return entry.outcome }
            }
            let durable = entries[key].flatMap { $0.serial == serial ? $0.durable : nil }
            entries[key] = Entry(serial: serial, stage: stage, durable: durable, outcome: outcome)
            writer.submit(operation, background: background)
            return nil
        }
        guard let superseding else { return }
        if waitForNewer {
            superseding.wait(completion)
            // The write this one waits for may have been queued in the background.
            writer.hurry()
        } else {
            completion(nil)
        }
    }

    /// Persists `record`, returning once it is durable; suspends instead of blocking.
    func persistDurably(_ record: PersistedInstance) async throws {
        try await suspending { persist(record, completion: $0) }
    }

    /// Removes the record of instance `serial` (0 for a recovered one) and remembers the deletion
    /// so a late event for it does not bring the file back. `completion` as for `persist`.
    package func remove(_ key: InstanceKey, serial: UInt32, completion: @escaping @Sendable ((any Error)?) -> Void) {
        let outcome = Outcome()
        var operation = operation(remove: key)
        operation.completion = { [self] error in
            settle(key, serial: serial, stage: .deleted, failed: error != nil)
            outcome.resolve(error)
            completion(error)
        }
        let queued = stripe(for: key).entries.withLock { entries -> Bool in
            if let entry = entries[key], entry.serial > serial { return false }
            let durable = entries[key].flatMap { $0.serial == serial ? $0.durable : nil }
            entries[key] = Entry(serial: serial, stage: .deleted, durable: durable, outcome: outcome)
            writer.submit(operation)
            return true
        }
        // A newer instance owns the key (and the file): nothing of this one is left to remove.
        if !queued { completion(nil) }
    }

    /// Removes the record, returning once the removal is durable; suspends instead of blocking.
    func removeDurably(_ key: InstanceKey, serial: UInt32) async throws {
        try await suspending { remove(key, serial: serial, completion: $0) }
    }

    /// The runtime delivered the deleted event. The tombstone is kept a while longer: the
    /// deleted event can overtake the instance's own exit (or started) event, because the
    /// runtime wakes waiters before it emits the exit, so a client can delete in between.
    /// Tombstones are dropped `tombstoneLifetime` after their deleted event.
    package func forgetTombstone(_ key: InstanceKey) {
        let now = ContinuousClock.now
        let serial = stripe(for: key).entries.withLock { entries in
            entries[key].flatMap { $0.stage == .deleted ? $0.serial : nil }
        }
        let expired = tombstones.withLock { tombstones -> [(InstanceKey, UInt32)] in
            if let serial { tombstones.queue.append((key, serial, now + Self.tombstoneLifetime)) }
            var expired: [(InstanceKey, UInt32)] = []
            while tombstones.head < tombstones.queue.count, tombstones.queue[tombstones.head].expiry <= now {
                let (key, serial, _) = tombstones.queue[tombstones.head]
                expired.append((key, serial))
                tombstones.head += 1
            }
            if tombstones.head > 1024, tombstones.head * 2 > tombstones.queue.count {
                tombstones.queue.removeFirst(tombstones.head)
                tombstones.head = 0
            }
            return expired
        }
        for (key, serial) in expired {
            stripe(for: key).entries.withLock { entries in
                if let entry = entries[key], entry.stage == .deleted, entry.serial == serial { entries[key] = nil }
            }
        }
    }

    static let tombstoneLifetime: Duration = .seconds(60)
    private let tombstones = Mutex<(queue: [(key: InstanceKey, serial: UInt32, expiry: ContinuousClock.Instant)], head: Int)>(([], 0))

    /// Whether the exit of instance `serial` is on disk (or the instance is gone).
    package func hasPersistedExit(_ key: InstanceKey, serial: UInt32) -> Bool {
        stripe(for: key).entries.withLock { entries in
            guard let entry = entries[key] else { return false }
            return entry.serial > serial || (entry.durable ?? .created) >= .exited
        }
    }

    /// Returns once everything queued so far is durable (or failed) and the record files show it.
    func flush() {
        let done = DispatchSemaphore(value: 0)
        writer.submit(JournalWriter.Operation(action: .flush, completion: { _ in done.signal() }))
        done.wait()
    }

    /// The writer finished the batch holding a write of (key, serial, stage).
    private func settle(_ key: InstanceKey, serial: UInt32, stage: Stage, failed: Bool) {
        stripe(for: key).entries.withLock { entries in
            guard var entry = entries[key], entry.serial == serial else { return }
            if failed {
                // Let a later write of the same stage try again (unless something newer came).
                if entry.stage == stage, let durable = entry.durable { entry.stage = durable }
            } else if entry.durable.map({ $0 < stage }) ?? true {
                entry.durable = stage
            }
            entries[key] = entry
        }
    }

    private func operation(put record: PersistedInstance) -> JournalWriter.Operation {
        JournalWriter.Operation(
            action: .put, path: path(for: record.key), directory: namespaceDirectory(for: record.key),
            body: RecordJSON.encode(record))
    }

    private func operation(remove key: InstanceKey) -> JournalWriter.Operation {
        JournalWriter.Operation(
            action: .remove, path: path(for: key), directory: namespaceDirectory(for: key), body: RecordJSON.encode(key))
    }


    private func suspending(_ start: (@escaping @Sendable ((any Error)?) -> Void) -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            start { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
        }
    }

    // MARK: Files

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601WithFractionalSeconds
        return decoder
    }()

    private func contents(of path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw StoreError.io("cannot list \(path): \(error.localizedDescription)")
        }
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
