import Crypto
import Foundation
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

    func load(path: String) throws -> LoadedModule {
        let url = URL(fileURLWithPath: path)
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw RuntimeError.notFound("module \(path): no such file")
        }
        if let type = attributes[.type] as? FileAttributeType, type != .typeRegular {
            throw RuntimeError.invalidArgument("module \(path): not a regular file")
        }
        if let size = attributes[.size] as? Int, size > validator.maxModuleBytes {
            throw RuntimeError.invalidArgument(
                "module \(path) is \(size) bytes, over the size limit of \(validator.maxModuleBytes) bytes")
        }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw RuntimeError(.permissionDenied, "module \(path): cannot read: \(error.localizedDescription)")
        }
        return try load(bytes: [UInt8](data))
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
