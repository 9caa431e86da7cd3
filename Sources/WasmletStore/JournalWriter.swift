import Foundation
import Glibc
import Logging

/// The writer thread and the checkpoint thread behind `InstanceStore` (group commit; see there
/// for the design and `JournalFile` for the format).
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

    /// The generation being appended to.
    private struct Generation {
        let number: UInt64
        let path: String
        let fd: Int32
        var offset = 0
        var allocated = 0
        var sequence: UInt64 = 0
        /// What a checkpoint must fsync before this generation may go.
        var files: Set<String> = []
        var directories: Set<String> = []
    }

    private typealias Retired = JournalCheckpoints.Retired

    private let stateDirectory: String
    private let instancesDirectory: String
    private let rotationBytes: Int
    /// The journal is zero-filled this far ahead of its frames.
    private let chunkBytes = 1 << 20
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
    private var current: Generation?
    private var nextGeneration: UInt64
    /// Generations given up (rotated, or broken by a failed write) whose checkpoint may start
    /// once a newer generation is durable with the unapplied operations in it.
    private var retiring: [Retired] = []
    /// Durable operations not yet applied to their files: path -> the latest one.
    private var unapplied: [String: Unapplied] = [:]
    /// Paths in the order they became unapplied (entries whose `since` no longer matches are
    /// left over from an earlier round and skipped).
    private var unappliedOrder: [(path: String, since: ContinuousClock.Instant)] = []
    private var unappliedHead = 0
    private var knownDirectories: Set<String> = []
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

    /// Spare record files: a removed record's file is renamed into `instances/.free/` and the
    /// next new record takes it over, instead of unlinking one inode and allocating another.
    /// Allocation is the costly part of a new file (ext4 without a journal scans past every
    /// recently freed inode; `perf` showed `open(O_CREAT)` at ~40% of the daemon's CPU when
    /// thousands of instances came and went). A leading '.' never names a namespace directory
    /// (`RecordFileName` encodes it). Under `processing`.
    private let freeDirectory: String
    private var freeFiles: [String] = []
    private var nextFreeNumber = 0
    private var freeFilesEnabled = true
    static let maxFreeFiles = 1024

    /// The checkpoint thread: takes retired generations (see `JournalCheckpoints`).
    private let checkpoints: JournalCheckpoints

    init(
        stateDirectory: String, instancesDirectory: String, rotationBytes: Int, logger: Logger,
        clock: any WriterClock = MonotonicWriterClock()
    ) throws {
        self.clock = clock
        queue = GroupCommitQueue(clock: clock)
        self.stateDirectory = stateDirectory
        self.instancesDirectory = instancesDirectory
        self.rotationBytes = rotationBytes
        self.logger = logger
        checkpoints = JournalCheckpoints(stateDirectory: stateDirectory, logger: logger)
        nextGeneration = 1
        freeDirectory = instancesDirectory + "/.free"
        nextGeneration = (existingGenerations().last?.generation ?? 0) + 1
        adoptSpareFiles()
        Thread { [self] in
            Thread.current.name = "wasmlet-journal"
            runWriter()
        }.start()
    }

    /// Takes over the spare files an earlier daemon left (up to `maxFreeFiles`; the rest are
    /// removed), or disables reuse when the directory cannot be made.
    private func adoptSpareFiles() {
        guard mkdir(freeDirectory, 0o700) == 0 || errno == EEXIST else {
            freeFilesEnabled = false
            return
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: freeDirectory)) ?? []
        for name in names {
            let path = freeDirectory + "/" + name
            guard let number = Int(name), freeFiles.count < Self.maxFreeFiles else {
                unlink(path)
                continue
            }
            freeFiles.append(path)
            nextFreeNumber = max(nextFreeNumber, number + 1)
        }
    }

    /// The journal files in the state directory, oldest generation first.
    func existingGenerations() -> [(generation: UInt64, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: stateDirectory)) ?? []
        return names.compactMap { name in
            JournalFile.generation(ofFileName: name).map { ($0, stateDirectory + "/" + name) }
        }.sorted { $0.generation < $1.generation }
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
        if failure == nil, (current?.offset ?? 0) >= rotationBytes, checkpoints.isIdle() { rotate() }
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


    /// Appends `writes` to the current generation (starting one if needed) and makes them
    /// durable. On failure the generation is given up: nothing is appended after a write whose
    /// outcome is unknown.
    private func commit(_ writes: [Operation]) throws {
        if current == nil { try openGeneration() }
        var generation = current!
        var buffer: [UInt8] = []
        buffer.reserveCapacity(writes.reduce(0) { $0 + $1.body.count + JournalFile.frameHeaderBytes + 1 })
        for operation in writes {
            JournalFile.appendFrame(
                kind: operation.action == .put ? .put : .remove, body: operation.body, sequence: generation.sequence,
                to: &buffer)
            generation.sequence += 1
        }
        do {
            try append(buffer, to: &generation)
        } catch {
            abandonCurrent()
            throw error
        }
        current = generation
    }

    /// A new generation: header, the unapplied operations, zero fill; durable with its directory
    /// entry. Then the generations given up before it can be checkpointed.
    private func openGeneration() throws {
        let number = nextGeneration
        nextGeneration += 1
        let path = stateDirectory + "/" + JournalFile.fileName(generation: number)
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreFiles.failure("cannot create journal \(path)") }
        var generation = Generation(number: number, path: path, fd: fd)
        var buffer: [UInt8] = []
        JournalFile.appendFrame(kind: .header, body: JournalFile.headerBody(generation: number), sequence: 0, to: &buffer)
        generation.sequence = 1
        for (_, entry) in unapplied.sorted(by: { $0.key < $1.key }) {
            JournalFile.appendFrame(
                kind: entry.operation.action == .put ? .put : .remove, body: entry.operation.body,
                sequence: generation.sequence, to: &buffer)
            generation.sequence += 1
        }
        do {
            try append(buffer, to: &generation)
            try StoreFiles.syncDirectory(stateDirectory)
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
        current = generation
        let superseded = retiring
        retiring.removeAll()
        for retired in superseded { checkpoints.enqueue(retired) }
    }

    private func append(_ frames: [UInt8], to generation: inout Generation) throws {
        var bytes = frames
        let end = generation.offset + frames.count
        var allocated = generation.allocated
        if end > allocated {
            allocated = (end / chunkBytes + 1) * chunkBytes
            bytes.append(contentsOf: repeatElement(0, count: allocated - end))
        }
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let written = pwrite(generation.fd, raw.baseAddress! + done, raw.count - done, off_t(generation.offset + done))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw StoreFiles.failure("cannot write journal \(generation.path)")
                }
                done += written
            }
        }
        guard fdatasync(generation.fd) == 0 else { throw StoreFiles.failure("cannot fdatasync journal \(generation.path)") }
        generation.offset = end
        generation.allocated = allocated
    }

    private func abandonCurrent() {
        guard let generation = current else { return }
        close(generation.fd)
        retiring.append(Retired(path: generation.path, files: generation.files, directories: generation.directories))
        current = nil
    }

    private func rotate() {
        abandonCurrent()
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
        current?.files.insert(operation.path)
        current?.directories.insert(operation.directory)
        do {
            switch operation.action {
            case .put: try writeFile(operation)
            case .remove: try removeFile(operation)
            case .flush: return
            }
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
            knownDirectories.remove(operation.directory)
            if unapplied[operation.path] == nil {
                unapplied[operation.path] = Unapplied(operation: operation, since: since, failedAt: clock.now)
                unappliedOrder.append((operation.path, since))
            }
        }
    }

    private func writeFile(_ operation: Operation) throws {
        if !knownDirectories.contains(operation.directory) {
            if mkdir(operation.directory, 0o700) == 0 {
                // A new namespace directory: its entry in instances/ needs a checkpoint too.
                current?.directories.insert(instancesDirectory)
            } else if errno != EEXIST {
                throw StoreFiles.failure("cannot create directory \(operation.directory)")
            }
            knownDirectories.insert(operation.directory)
        }
        // In place, not temp file and rename: a rename frees an inode and the next write
        // allocates another, which on ext4 grows costlier with every recently freed inode
        // (without a journal ext4 avoids reusing them and scans past them). A write torn by a
        // crash is harmless: the file is only written for an operation the current journal
        // holds, so recovery replays the record over it.
        // A new record takes over a spare file when there is one (see `freeFiles`); a crash
        // between the rename and the write leaves a removed record's text under this name, which
        // the journal covers like any torn write.
        var fd = open(operation.path, O_WRONLY | O_CLOEXEC)
        if fd < 0, errno == ENOENT, let spare = freeFiles.popLast() {
            current?.directories.insert(freeDirectory)
            if rename(spare, operation.path) == 0 { fd = open(operation.path, O_WRONLY | O_CLOEXEC) }
        }
        if fd < 0 { fd = open(operation.path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw StoreFiles.failure("cannot open \(operation.path)") }
        defer { close(fd) }
        try operation.body.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let written = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(done))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw StoreFiles.failure("cannot write \(operation.path)")
                }
                done += written
            }
        }
        guard ftruncate(fd, off_t(operation.body.count)) == 0 else {
            throw StoreFiles.failure("cannot truncate \(operation.path)")
        }
    }

    /// Removes a record file, keeping it as a spare for the next new record while there are
    /// fewer than `maxFreeFiles`.
    private func removeFile(_ operation: Operation) throws {
        if freeFilesEnabled, freeFiles.count < Self.maxFreeFiles {
            let spare = freeDirectory + "/" + String(nextFreeNumber)
            if rename(operation.path, spare) == 0 {
                nextFreeNumber += 1
                freeFiles.append(spare)
                current?.directories.insert(freeDirectory)
                return
            }
            if errno == ENOENT { return }
        }
        if unlink(operation.path) != 0, errno != ENOENT {
            throw StoreFiles.failure("cannot remove \(operation.path)")
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
