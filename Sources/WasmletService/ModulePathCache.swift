import Glibc
import Synchronization
import WasmletRuntime

/// Remembers which digest a module file had, keyed by path and the file's identity (device,
/// inode, size, mtime), so repeated creates from the same path skip reading and hashing the
/// file. The runtime's module cache holds the parsed module; this only saves the file read.
/// A file that was replaced or rewritten has another identity and is loaded again.
final class ModulePathCache: Sendable {
    private struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modifiedSeconds: Int
        var modifiedNanoseconds: Int
    }

    private let digests = Mutex<[String: (FileIdentity, String)]>([:])
    private let limit = 4096

    func load(path: String, runtime: WasmletRuntime) throws -> LoadedModule {
        guard path.hasPrefix("/") else {
            throw RuntimeError(.invalidArgument, "module path \"\(path)\" must be absolute (the daemon has its own working directory)")
        }
        let identity = Self.identity(of: path)
        if let identity, let (known, digest) = digests.withLock({ $0[path] }), known == identity,
            let module = runtime.module(digest: digest)
        {
            return module
        }
        let module = try runtime.loadModule(path: path)
        if let identity {
            digests.withLock { table in
                if table.count >= limit { table.removeAll(keepingCapacity: true) }
                table[path] = (identity, module.digest)
            }
        }
        return module
    }

    /// Whether `load(path:runtime:)` would return at once, without reading the file.
    func isLoaded(path: String, runtime: WasmletRuntime) -> Bool {
        guard path.hasPrefix("/"), let identity = Self.identity(of: path),
            let (known, digest) = digests.withLock({ $0[path] }), known == identity
        else { return false }
        return runtime.module(digest: digest) != nil
    }

    private static func identity(of path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return FileIdentity(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            modifiedSeconds: info.st_mtim.tv_sec, modifiedNanoseconds: info.st_mtim.tv_nsec)
    }
}
