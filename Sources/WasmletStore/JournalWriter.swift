import Foundation
import Glibc
import Logging
import WasmletRuntime

/// The writer thread behind `InstanceStore` (group commit; see there for the design and
/// `JournalFile` for the format). It turns batches of operations into journal commits and
/// record-file updates; the jobs it drives are types of their own:
/// - `GroupCommitQueue`: what callers submit, taken a batch at a time;
/// - `JournalGenerations`: the journal files, appended to and rotated;
/// - `RecordFiles`: the per-instance files and their spare pool;
/// - `JournalCheckpoints`: the thread that retires old generations.
/// None of them calls back into the writer, and the writer calls the store only through the
/// operations' completions.
///
/// Threads and state:
/// - callers `submit` operations to `queue` (`GroupCommitQueue`);
/// - the writer thread takes all queued operations at once and handles them as one batch under
///   `processing` (which `recoveryCommit` also takes, before the API is served), then calls
///   their completions, outside both locks;
/// - the checkpoint thread (`JournalCheckpoints`) fsyncs what retired generations touched, then
///   deletes them.
///
/// Record files lag the journal a little: a batch's removals are applied (unlinked) before its
/// callers are told, but its records are written to their files afterwards, once the writer has
/// had nothing to do for 20 ms, or once they are `fileLag` old. An instance created and
/// deleted within that time (a short guest, busy or not) never costs a file write; creating
/// files is what the writer spent most of its time on otherwise (ext4's inode allocator). The invariant that keeps this
/// safe: every durable operation is either applied to its file, or is the latest operation for
/// its file in the current generation (a new generation starts with the unapplied ones).
final class JournalWriter: @unchecked Sendable {
    struct Operation {
        /// `flush` writes nothing; it completes with its batch, once every record file is up to date.
        enum Action { case put, remove, flush }
        var action: Action
        /// The record file, and its directory (`instances/<namespace>`).
        var path: String = ""
        var directory: String = ""
        /// The frame body: the record's JSON (also the file's contents) or the removed key's JSON.
        var body: [UInt8] = []
        /// Called on the writer thread once the batch holding this operation is durable (nil) or
        /// failed. It must not wait for the store (the writer would wait for itself).
        var completion: (@Sendable ((any Error)?) -> Void)?
    }

    private let stateDirectory: String
    private let rotationBytes: Int
    private let logger: Logger

    /// Every delay and wait of the writer is measured on this clock (monotonic; see
    /// `MonotonicCondition` for why not the wall clock).
    private let clock: any WriterClock

    /// What callers submit, taken by the writer thread a batch at a time (`GroupCommitQueue`).
    private let queue: GroupCommitQueue
    /// How long background operations may wait for company.
    static let backgroundDelay = GroupCommitQueue.backgroundDelay

    // Under `processing` (the writer thread, or recovery before it has anything to do).
    private let processing = NSLock()
    private var generations: JournalGenerations
    private var files: RecordFiles
    /// Durable operations not yet applied to their files: path -> the latest one.
    private var unapplied: [String: Unapplied] = [:]
    /// Paths in the order they became unapplied (entries whose `since` no longer matches are
    /// left over from an earlier round and skipped).
    private var unappliedOrder: [(path: String, since: ContinuousClock.Instant)] = []
    private var unappliedHead = 0
    /// Set while file updates fail, for logging the failure and the recovery once.
    private var failingFiles = false

    private struct Unapplied {
        var operation: Operation
        var since: ContinuousClock.Instant
        /// When applying it last failed; retried a second later.
        var failedAt: ContinuousClock.Instant?
    }

    /// How long a record may wait for its file while the writer is busy.
    private let fileLag: Duration = .milliseconds(100)
    /// How long the writer must have had nothing to do before it writes record files anyway.
    static let idleDelay = GroupCommitQueue.idleDelay

    /// The checkpoint thread: takes retired generations (see `JournalCheckpoints`).
    private let checkpoints: JournalCheckpoints

    init(
        stateDirectory: String, instancesDirectory: String, rotationBytes: Int, logger: Logger,
        clock: any WriterClock = MonotonicWriterClock()
    ) throws {
        self.clock = clock
        queue = GroupCommitQueue(clock: clock)
        self.stateDirectory = stateDirectory
        self.rotationBytes = rotationBytes
        self.logger = logger
        checkpoints = JournalCheckpoints(stateDirectory: stateDirectory, logger: logger)
        generations = JournalGenerations(stateDirectory: stateDirectory)
        files = RecordFiles(instancesDirectory: instancesDirectory)
        Thread { [self] in
            nameCurrentThread("wasmlet-journal")
            runWriter()
        }.start()
    }

    /// The journal files in the state directory, oldest generation first.
    func existingGenerations() -> [(generation: UInt64, path: String)] {
        JournalGenerations.existing(in: stateDirectory)
    }

    /// Queues an operation for the next batch (see `GroupCommitQueue.submit`).
    func submit(_ operation: Operation, background: Bool = false) {
        queue.submit(operation, background: background)
    }

    /// Someone now waits for an operation queued in the background: write it soon.
    func hurry() { queue.hurry() }

    // MARK: The writer thread

    private func runWriter() {
        var batch: [Operation] = []
        while true {
            let filesToWrite = hasUnappliedFiles()
            guard queue.take(into: &batch, filesToWrite: filesToWrite) else {
                processing.lock()
                applyFiles(.whileIdle)
                processing.unlock()
                continue
            }
            if !batch.isEmpty { process(batch) }
            batch.removeAll(keepingCapacity: true)
        }
    }

    private func hasUnappliedFiles() -> Bool {
        processing.lock()
        defer { processing.unlock() }
        return !unapplied.isEmpty
    }

    private func process(_ batch: [Operation]) {
        processing.lock()
        // Within a batch the last operation on a file is the one that counts.
        var last: [String: Int] = [:]
        var flush = false
        for (index, operation) in batch.enumerated() {
            switch operation.action {
            case .put, .remove: last[operation.path] = index
            case .flush: flush = true
            }
        }
        let writes = last.values.sorted().map { batch[$0] }
        var failure: (any Error)?
        if !writes.isEmpty {
            do {
                try commit(writes)
                let now = clock.now
                for operation in writes {
                    var kept = operation
                    kept.completion = nil
                    if operation.action == .remove {
                        // A Delete's answer means the file is gone.
                        unapplied[operation.path] = nil
                        apply(kept, at: now)
                    } else if unapplied[operation.path] != nil {
                        unapplied[operation.path]!.operation = kept
                    } else {
                        unapplied[operation.path] = Unapplied(operation: kept, since: now)
                        unappliedOrder.append((operation.path, now))
                    }
                }
            } catch {
                failure = error
            }
        }
        if flush { applyFiles(.all) }
        processing.unlock()

        for operation in batch { operation.completion?(failure) }

        processing.lock()
        applyFiles(.aged)
        if failure == nil, generations.currentBytes >= rotationBytes, checkpoints.isIdle() { rotate() }
        processing.unlock()
    }

    private enum ApplyMode {
        /// Those that waited `fileLag`.
        case aged
        /// All, until something is queued.
        case whileIdle
        /// All.
        case all
    }

    /// Writes the record files of unapplied operations, oldest first.
    private func applyFiles(_ mode: ApplyMode) {
        let now = clock.now
        // Entries appended meanwhile (failures to retry later) wait for the next round.
        let end = unappliedOrder.count
        while unappliedHead < end {
            let (path, since) = unappliedOrder[unappliedHead]
            guard let entry = unapplied[path], entry.since == since else {
                unappliedHead += 1
                continue
            }
            if mode == .aged, now - since < fileLag { break }
            if mode == .whileIdle, !queue.isEmpty() { break }
            if let failedAt = entry.failedAt, now - failedAt < .seconds(1) {
                guard mode == .all else { break }
                unappliedHead += 1
                unappliedOrder.append((path, since))
                continue
            }
            unappliedHead += 1
            unapplied[path] = nil
            apply(entry.operation, at: since)
        }
        if unappliedHead > 1024, unappliedHead * 2 > unappliedOrder.count {
            unappliedOrder.removeFirst(unappliedHead)
            unappliedHead = 0
        }
    }

    /// Appends `writes` to the current generation (starting one if needed, with the unapplied
    /// operations carried over) and makes them durable.
    private func commit(_ writes: [Operation]) throws {
        if !generations.isOpen { try openGeneration() }
        try generations.commit(writes.map { (kind: $0.action == .put ? .put : .remove, body: $0.body) })
    }

    /// A new generation, holding the unapplied operations; then the generations given up before
    /// it can be checkpointed.
    private func openGeneration() throws {
        let carried = unapplied.sorted(by: { $0.key < $1.key }).map { _, entry in
            (kind: entry.operation.action == .put ? JournalFile.Kind.put : .remove, body: entry.operation.body)
        }
        for retired in try generations.open(carrying: carried) { checkpoints.enqueue(retired) }
    }

    private func rotate() {
        generations.abandonCurrent()
        do {
            try openGeneration()
        } catch {
            // The next batch tries again (and fails its callers if it cannot either).
            logger.warning("cannot start a new journal generation: \(error)")
        }
    }

    // MARK: Record files

    /// Brings a record file in line with a durable operation: written in place for a put,
    /// unlinked for a removal. No fsync: the journal holds the record until a checkpoint has
    /// fsync'd the file. A failure keeps the operation unapplied (retried a second later).
    private func apply(_ operation: Operation, at since: ContinuousClock.Instant) {
        do {
            let touched: [String]
            switch operation.action {
            case .put: touched = try files.write(operation.body, to: operation.path, in: operation.directory)
            case .remove: touched = try files.remove(operation.path)
            case .flush: return
            }
            generations.touched(file: operation.path, directories: [operation.directory] + touched)
            if failingFiles, unapplied.values.allSatisfy({ $0.failedAt == nil }) {
                failingFiles = false
                logger.notice("instance record files are up to date again")
            }
        } catch {
            if !failingFiles {
                failingFiles = true
                logger.error(
                    "cannot update an instance record file; its record is in the journal, retrying",
                    metadata: ["path": "\(operation.path)", "error": "\(error)"])
            }
            // What a failed update did change is unknown: its checkpoint fsyncs all of it.
            generations.touched(file: operation.path, directories: [operation.directory] + files.sharedDirectories)
            files.forget(operation.directory)
            if unapplied[operation.path] == nil {
                unapplied[operation.path] = Unapplied(operation: operation, since: since, failedAt: clock.now)
                unappliedOrder.append((operation.path, since))
            }
        }
    }

    // MARK: Recovery

    /// Recovery's writes: `rewrites` go to a new generation like any batch, then the journals
    /// they supersede are deleted (`setAside` ones renamed to `*.corrupt` instead).
    func recoveryCommit(_ rewrites: [Operation], superseding old: [String], setAside: [String]) throws {
        processing.lock()
        defer { processing.unlock() }
        if !rewrites.isEmpty {
            try commit(rewrites)
            let now = clock.now
            for operation in rewrites { apply(operation, at: now) }
        }
        for path in old {
            if setAside.contains(path) {
                rename(path, path + ".corrupt")
            } else if unlink(path) != 0, errno != ENOENT {
                throw StoreFiles.failure("cannot remove the replayed journal \(path)")
            }
        }
        if !old.isEmpty { try StoreFiles.syncDirectory(stateDirectory) }
    }
}
