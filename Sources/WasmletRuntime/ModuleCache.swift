import Crypto
import Foundation
import Glibc
import Synchronization

/// Parsed modules keyed by SHA-256 digest, bounded by count and total bytes, evicting the least
/// recently used. Instances keep a strong reference to their module, so eviction never pulls a
/// module out from under a running guest; it only means the next create must load it again.
final class ModuleCache: Sendable {
    struct Statistics: Sendable {
        var entries: Int
        var bytes: Int
        var hits: UInt64
        var misses: UInt64
        var evictions: UInt64
    }

    private struct State {
        var entries: [String: (module: LoadedModule, lastUse: UInt64)] = [:]
        var clock: UInt64 = 0
        var bytes = 0
        var hits: UInt64 = 0
        var misses: UInt64 = 0
        var evictions: UInt64 = 0
    }

    private let state = Mutex(State())
    private let validator: ModuleValidator
    let maxEntries: Int
    let maxBytes: Int

    /// Called (outside the lock) with the digest of each evicted module.
    private let onEvict: @Sendable (String) -> Void

    init(maxEntries: Int, maxBytes: Int, maxModuleBytes: Int, onEvict: @escaping @Sendable (String) -> Void = { _ in }) {
        self.onEvict = onEvict
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = maxBytes
        self.validator = ModuleValidator(maxModuleBytes: maxModuleBytes)
    }

    static func digest(of bytes: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    /// Reads a module file. Opened without blocking (a FIFO at the path must not hold the
    /// caller), then checked through its descriptor: a regular file within the size limit. Each
    /// failure is named with its errno, and a daemon out of descriptors says so as
    /// RESOURCE_EXHAUSTED rather than blaming the file.
    func load(path: String) throws -> LoadedModule {
        func failure(_ what: String, _ code: Int32) -> RuntimeError {
            let reason = String(cString: strerror(code))
            switch code {
            case ENOENT, ENOTDIR: return .notFound("module \(path): no such file")
            case EACCES, EPERM: return RuntimeError(.permissionDenied, "module \(path): cannot \(what): \(reason)")
            case EMFILE, ENFILE, ENOMEM:
                return .resourceExhausted("module \(path): cannot \(what): \(reason) (the daemon is out of descriptors or memory)")
            default: return .invalidArgument("module \(path): cannot \(what): \(reason)")
            }
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw failure("open", errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("stat", errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw RuntimeError.invalidArgument("module \(path): not a regular file") }
        guard info.st_size <= validator.maxModuleBytes else {
            throw RuntimeError.invalidArgument(
                "module \(path) is \(info.st_size) bytes, over the size limit of \(validator.maxModuleBytes) bytes")
        }
        // Up to one byte past the limit, in case the file grew since fstat.
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
        var count = 0
        while count < bytes.count {
            let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw failure("read", errno)
            }
            if got == 0 { break }
            count += got
            if count == bytes.count, count <= validator.maxModuleBytes { bytes += [UInt8](repeating: 0, count: 64 << 10) }
        }
        bytes.removeSubrange(count...)
        return try load(bytes: bytes)
    }

    func load(bytes: [UInt8]) throws -> LoadedModule {
        if bytes.count > validator.maxModuleBytes {
            throw RuntimeError.invalidArgument(
                "module is \(bytes.count) bytes, over the size limit of \(validator.maxModuleBytes) bytes")
        }
        let digest = Self.digest(of: bytes)
        if let hit = lookup(digest: digest) { return hit }
        // Parse and validate outside the lock: two racing loads of one module both parse, and
        // the second insert simply replaces an identical entry.
        let module = try validator.validate(bytes: bytes, digest: digest)
        insert(module)
        return module
    }

    /// The cached module, counting a hit or a miss.
    func lookup(digest: String) -> LoadedModule? {
        state.withLock { state in
            state.clock += 1
            guard let entry = state.entries[digest] else {
                state.misses += 1
                return nil
            }
            state.hits += 1
            state.entries[digest] = (entry.module, state.clock)
            return entry.module
        }
    }

    private func insert(_ module: LoadedModule) {
        let evicted = state.withLock { state -> [String] in
            var evicted: [String] = []
            state.clock += 1
            if let old = state.entries[module.digest] { state.bytes -= old.module.byteCount }
            state.entries[module.digest] = (module, state.clock)
            state.bytes += module.byteCount
            while state.entries.count > maxEntries || (state.bytes > maxBytes && state.entries.count > 1) {
                guard let victim = state.entries.min(by: { $0.value.lastUse < $1.value.lastUse }) else { break }
                state.entries[victim.key] = nil
                state.bytes -= victim.value.module.byteCount
                state.evictions += 1
                evicted.append(victim.key)
            }
            return evicted
        }
        evicted.forEach(onEvict)
    }

    var statistics: Statistics {
        state.withLock { Statistics(entries: $0.entries.count, bytes: $0.bytes, hits: $0.hits, misses: $0.misses, evictions: $0.evictions) }
    }
}
