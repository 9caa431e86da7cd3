import Foundation
import Glibc

/// The journal's generation files (`journal-<generation>.wal` in the state directory; see
/// `JournalFile` for the format): the one being appended to, and those given up (rotated, or
/// broken by a failed write) that wait for a newer generation to be durable before their
/// checkpoint. Owned by `JournalWriter` and used only under its `processing` lock. It calls
/// nothing back: opening a generation returns the generations its checkpoint may now take.
struct JournalGenerations {
    typealias Retired = JournalCheckpoints.Retired

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

    private let stateDirectory: String
    /// The journal is zero-filled this far ahead of its frames.
    private let chunkBytes = 1 << 20
    private var current: Generation?
    private var nextGeneration: UInt64
    /// Generations given up, waiting for a newer one to be durable with the unapplied
    /// operations in it.
    private var retiring: [Retired] = []

    init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
        nextGeneration = (Self.existing(in: stateDirectory).last?.generation ?? 0) + 1
    }

    /// The journal files in `stateDirectory`, oldest generation first.
    static func existing(in stateDirectory: String) -> [(generation: UInt64, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: stateDirectory)) ?? []
        return names.compactMap { name in
            JournalFile.generation(ofFileName: name).map { ($0, stateDirectory + "/" + name) }
        }.sorted { $0.generation < $1.generation }
    }

    /// Bytes appended to the current generation (0 without one).
    var currentBytes: Int { current?.offset ?? 0 }
    var isOpen: Bool { current != nil }

    /// Starts a new generation holding `carried` (the durable operations not yet applied to
    /// their files), durable with its directory entry. Returns the generations given up before
    /// it, which may now be checkpointed.
    mutating func open(carrying carried: [(kind: JournalFile.Kind, body: [UInt8])]) throws -> [Retired] {
        let number = nextGeneration
        nextGeneration += 1
        let path = stateDirectory + "/" + JournalFile.fileName(generation: number)
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreFiles.failure("cannot create journal \(path)") }
        var generation = Generation(number: number, path: path, fd: fd)
        var buffer: [UInt8] = []
        JournalFile.appendFrame(kind: .header, body: JournalFile.headerBody(generation: number), sequence: 0, to: &buffer)
        generation.sequence = 1
        for frame in carried {
            JournalFile.appendFrame(kind: frame.kind, body: frame.body, sequence: generation.sequence, to: &buffer)
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
        defer { retiring.removeAll() }
        return retiring
    }

    /// Appends `frames` (a sequence number each, from the current generation's) and makes them
    /// durable. Requires an open generation. On failure the generation is given up: nothing is
    /// appended after a write whose outcome is unknown.
    mutating func commit(_ frames: [(kind: JournalFile.Kind, body: [UInt8])]) throws {
        var generation = current!
        var buffer: [UInt8] = []
        buffer.reserveCapacity(frames.reduce(0) { $0 + $1.body.count + JournalFile.frameHeaderBytes + 1 })
        for frame in frames {
            JournalFile.appendFrame(kind: frame.kind, body: frame.body, sequence: generation.sequence, to: &buffer)
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

    /// A record file (and its directory entries) changed under the current generation: its
    /// checkpoint must fsync them.
    mutating func touched(file: String, directories: [String]) {
        current?.files.insert(file)
        for directory in directories { current?.directories.insert(directory) }
    }

    /// Gives the current generation up (it joins those waiting for their checkpoint).
    mutating func abandonCurrent() {
        guard let generation = current else { return }
        close(generation.fd)
        retiring.append(Retired(path: generation.path, files: generation.files, directories: generation.directories))
        current = nil
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
}
