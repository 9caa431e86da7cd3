import Foundation
import Glibc

/// The per-instance record files under `instances/<namespace>/`, as `JournalWriter` applies
/// durable operations to them, with the pool of spare files. Owned by the writer and used only
/// under its `processing` lock. It knows nothing of the journal: each call returns the
/// directories whose entries it changed, which the current generation's checkpoint must fsync.
///
/// Spare files: a removed record's file is renamed into `instances/.free/` and the next new
/// record takes it over, instead of unlinking one inode and allocating another. Allocation is
/// the costly part of a new file (ext4 without a journal scans past every recently freed inode;
/// `perf` showed `open(O_CREAT)` at ~40% of the daemon's CPU when thousands of instances came
/// and went). A leading '.' never names a namespace directory (`RecordFileName` encodes it).
struct RecordFiles {
    static let maxFreeFiles = 1024

    private let instancesDirectory: String
    private let freeDirectory: String
    private var freeFiles: [String] = []
    private var nextFreeNumber = 0
    private var freeFilesEnabled = true
    /// Namespace directories known to exist (forgotten when a write in one fails).
    private var knownDirectories: Set<String> = []

    /// Takes over the spare files an earlier daemon left (up to `maxFreeFiles`; the rest are
    /// removed), or disables reuse when the directory cannot be made.
    init(instancesDirectory: String) {
        self.instancesDirectory = instancesDirectory
        freeDirectory = instancesDirectory + "/.free"
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

    /// Writes `body` as the record file `path` in `directory`, in place. Returns the
    /// directories whose entries changed beyond `directory` itself.
    ///
    /// In place, not temp file and rename: a rename frees an inode and the next write
    /// allocates another, which on ext4 grows costlier with every recently freed inode
    /// (without a journal ext4 avoids reusing them and scans past them). A write torn by a
    /// crash is harmless: the file is only written for an operation the current journal holds,
    /// so recovery replays the record over it. A new record takes over a spare file when there
    /// is one; a crash between the rename and the write leaves a removed record's text under
    /// this name, which the journal covers like any torn write.
    mutating func write(_ body: [UInt8], to path: String, in directory: String) throws -> [String] {
        var touched: [String] = []
        if !knownDirectories.contains(directory) {
            if mkdir(directory, 0o700) == 0 {
                // A new namespace directory: its entry in instances/ needs a checkpoint too.
                touched.append(instancesDirectory)
            } else if errno != EEXIST {
                throw StoreFiles.failure("cannot create directory \(directory)")
            }
            knownDirectories.insert(directory)
        }
        var fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0, errno == ENOENT, let spare = freeFiles.popLast() {
            touched.append(freeDirectory)
            if rename(spare, path) == 0 { fd = open(path, O_WRONLY | O_CLOEXEC) }
        }
        if fd < 0 { fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw StoreFiles.failure("cannot open \(path)") }
        defer { close(fd) }
        try body.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let written = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(done))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw StoreFiles.failure("cannot write \(path)")
                }
                done += written
            }
        }
        guard ftruncate(fd, off_t(body.count)) == 0 else { throw StoreFiles.failure("cannot truncate \(path)") }
        return touched
    }

    /// Removes the record file `path`, keeping it as a spare for the next new record while there
    /// are fewer than `maxFreeFiles`. Returns the directories whose entries changed beyond the
    /// file's own.
    mutating func remove(_ path: String) throws -> [String] {
        if freeFilesEnabled, freeFiles.count < Self.maxFreeFiles {
            let spare = freeDirectory + "/" + String(nextFreeNumber)
            if rename(path, spare) == 0 {
                nextFreeNumber += 1
                freeFiles.append(spare)
                return [freeDirectory]
            }
            if errno == ENOENT { return [] }
        }
        if unlink(path) != 0, errno != ENOENT { throw StoreFiles.failure("cannot remove \(path)") }
        return []
    }

    /// The directories besides its own that an update may change (for a failed one, whose
    /// changes are unknown).
    var sharedDirectories: [String] { [instancesDirectory, freeDirectory] }

    /// A write in `directory` failed: check that it exists again next time.
    mutating func forget(_ directory: String) { knownDirectories.remove(directory) }
}
