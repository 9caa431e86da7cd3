import Foundation
import Glibc
import Logging

/// The checkpoint thread behind `JournalWriter`: a generation the writer gave up (rotated, or
/// broken by a failed write) is queued here once a newer generation is durable with the
/// unapplied operations in it; the thread fsyncs the record files and directories that
/// generation touched, then deletes it. From then on the files alone hold what it held.
/// It calls back into neither the writer nor the store.
final class JournalCheckpoints: @unchecked Sendable {
    /// A generation no longer appended to, waiting for its checkpoint.
    struct Retired {
        var path: String
        var files: Set<String>
        var directories: Set<String>
    }

    private let stateDirectory: String
    private let logger: Logger

    // Under `checkpoints`.
    private let checkpoints = NSCondition()
    private var checkpointQueue: [Retired] = []
    private var checkpointThreadStarted = false

    init(stateDirectory: String, logger: Logger) {
        self.stateDirectory = stateDirectory
        self.logger = logger
    }

    /// No retired generation is waiting (the writer rotates only then).
    func isIdle() -> Bool {
        checkpoints.lock()
        defer { checkpoints.unlock() }
        return checkpointQueue.isEmpty
    }

    /// Hands a generation given up by the writer to the checkpoint thread (started on first use).
    func enqueue(_ retired: Retired) {
        checkpoints.lock()
        checkpointQueue.append(retired)
        let start = !checkpointThreadStarted
        checkpointThreadStarted = true
        checkpoints.unlock()
        checkpoints.signal()
        if start {
            Thread { [self] in
                Thread.current.name = "wasmlet-ckpoint"
                runCheckpoints()
            }.start()
        }
    }

    private func runCheckpoints() {
        while true {
            checkpoints.lock()
            while checkpointQueue.isEmpty { checkpoints.wait() }
            let next = checkpointQueue[0]
            checkpoints.unlock()
            do {
                try checkpoint(next)
                checkpoints.lock()
                checkpointQueue.removeFirst()
                checkpoints.unlock()
            } catch {
                logger.error("journal checkpoint failed; retrying in 1 s", metadata: ["journal": "\(next.path)", "error": "\(error)"])
                sleep(1)
            }
        }
    }

    /// Makes the record files (and their directory entries) a retired generation wrote durable,
    /// then deletes it: from then on the files alone hold what it held.
    private func checkpoint(_ retired: Retired) throws {
        for file in retired.files.sorted() {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                if errno == ENOENT { continue }  // removed since; its removal is a directory change
                throw StoreFiles.failure("cannot open \(file)")
            }
            defer { close(fd) }
            guard fsync(fd) == 0 else { throw StoreFiles.failure("cannot fsync \(file)") }
        }
        for directory in retired.directories.sorted() {
            let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 {
                if errno == ENOENT { continue }
                throw StoreFiles.failure("cannot open directory \(directory)")
            }
            defer { close(fd) }
            guard fsync(fd) == 0 else { throw StoreFiles.failure("cannot fsync directory \(directory)") }
        }
        if unlink(retired.path) != 0, errno != ENOENT {
            throw StoreFiles.failure("cannot remove journal \(retired.path)")
        }
        try StoreFiles.syncDirectory(stateDirectory)
    }
}
