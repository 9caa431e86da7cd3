#if canImport(Glibc)
import Glibc
#endif

/// One fuzz input: the bytes libFuzzer (or the replay) hands over.
public typealias FuzzBody = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

#if FUZZING
/// libFuzzer's own driver, linked in by `-sanitize=fuzzer`.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ body: FuzzBody
) -> CInt
#endif

/// The `main` of every fuzz target (`Sources/fuzz-*`).
///
/// Built by `scripts/fuzz.sh` (`-sanitize=fuzzer,address -DFUZZING`), it hands the process to
/// libFuzzer. In an ordinary build it replays the inputs named on its command line (files, or
/// directories of files) once each and exits 0 when none crashed: that is how the test suite
/// runs each target's committed seed corpus and every crash ever found (`Tests/Fuzz/<target>/`).
///
/// Why each target has a `main` at all: SwiftPM links every executable with `main` aliased to
/// the module's entry point, so a target without one does not link. A fuzz build also links
/// libFuzzer's archive, whose `main` calls `LLVMFuzzerTestOneInput`, so every target defines that
/// symbol too (as its body); whichever `main` the linker keeps, libFuzzer drives the same body.
public enum FuzzMain {
    public static func run(_ body: FuzzBody) -> Never {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = Optional(CommandLine.unsafeArgv)
        exit(LLVMFuzzerRunDriver(&argc, &argv, body))
        #else
        let paths = Array(CommandLine.arguments.dropFirst())
        guard !paths.isEmpty else {
            fail("usage: \(CommandLine.arguments[0]) INPUT|DIRECTORY...\n(replays each input once; built with scripts/fuzz.sh it fuzzes)")
        }
        var replayed = 0
        for path in paths {
            for file in inputs(at: path) {
                guard let bytes = readWhole(file) else {
                    fail("cannot read \(file): \(String(cString: strerror(errno)))")
                }
                _ = bytes.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
                replayed += 1
            }
        }
        guard replayed > 0 else {
            fail("no inputs found in \(paths.joined(separator: " "))")
        }
        print("replayed \(replayed) inputs")
        exit(0)
        #endif
    }

    private static func fail(_ message: String) -> Never {
        let line = message + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(2)
    }

    /// The regular files of a directory (sorted, not recursive), or the path itself.
    private static func inputs(at path: String) -> [String] {
        guard let directory = opendir(path) else { return [path] }
        defer { closedir(directory) }
        var files: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard !name.hasPrefix(".") else { continue }
            let file = path + "/" + name
            var info = stat()
            if stat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { files.append(file) }
        }
        return files.sorted()
    }

    private static func readWhole(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            bytes.append(contentsOf: chunk[0..<count])
            if count < chunk.count { return ferror(file) == 0 ? bytes : nil }
        }
    }
}

extension FuzzMain {
    /// The input as an array, for targets whose code takes one.
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
        guard let data, count > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: count))
    }
}
