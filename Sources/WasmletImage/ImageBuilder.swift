import Crypto
import Foundation
import WasmletConventions

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Platforms an image can declare.
public enum ImagePlatform {
    /// `wasip1/wasm`: what the image really is. containerd 1.6 imports it only with
    /// `ctr image import --all-platforms` (plain import: "image might be filtered out").
    public static let wasi = OCI.Platform(architecture: "wasm", os: "wasip1")

    /// `linux/<this machine's architecture>`: what containerd and the kubelet accept without
    /// any option, so `ctr image import`, `ctr run` and Kubernetes pods work as for any image.
    public static var host: OCI.Platform { OCI.Platform(architecture: hostArchitecture, os: "linux") }

    /// The GOARCH name of the architecture this program was built for.
    public static var hostArchitecture: String {
        #if arch(x86_64)
        return "amd64"
        #elseif arch(arm64)
        return "arm64"
        #elseif arch(arm)
        return "arm"
        #elseif arch(i386)
        return "386"
        #elseif arch(s390x)
        return "s390x"
        #elseif arch(powerpc64le)
        return "ppc64le"
        #elseif arch(riscv64)
        return "riscv64"
        #else
        return "unknown"
        #endif
    }

    /// `linux` (host architecture), `wasi` (wasip1/wasm), or an explicit `OS/ARCH[/VARIANT]`.
    public static func parse(_ text: String) throws -> OCI.Platform {
        switch text {
        case "linux": return host
        case "wasi", "wasip1": return wasi
        default: break
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        let wellFormed = parts.allSatisfy { part in
            !part.isEmpty && part.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
        }
        guard (2...3).contains(parts.count), wellFormed else { throw ImageError.invalidPlatform(text) }
        return OCI.Platform(
            architecture: String(parts[1]), os: String(parts[0]), variant: parts.count == 3 ? String(parts[2]) : nil)
    }
}

/// A file to put into the image besides the module.
public struct ImageFile: Equatable, Sendable {
    /// Absolute path inside the image.
    public var destination: String
    public var contents: [UInt8]
    public var mode: UInt32

    public init(destination: String, contents: [UInt8], mode: UInt32 = 0o644) {
        self.destination = destination
        self.contents = contents
        self.mode = mode
    }

    /// Reads `SRC:DEST` (DEST absolute; the first ":/" separates them): SRC must be a regular
    /// file (symlinks followed); the entry is 0755 if SRC is executable by its owner, else 0644.
    public static func load(mapping: String) throws -> ImageFile {
        guard let separator = mapping.range(of: ":/") else {
            throw ImageError.invalidFileMapping(mapping, "expected SRC:DEST with an absolute DEST, e.g. config.json:/etc/app.json")
        }
        let source = String(mapping[..<separator.lowerBound])
        let destination = String(mapping[mapping.index(after: separator.lowerBound)...])
        guard !source.isEmpty else { throw ImageError.invalidFileMapping(mapping, "SRC is empty") }
        var info = stat()
        guard stat(source, &info) == 0 else {
            throw ImageError.invalidFileMapping(mapping, "cannot read \(source): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw ImageError.invalidFileMapping(mapping, "\(source) is not a regular file (directories are not copied)")
        }
        let contents = try readFile(source)
        return ImageFile(destination: destination, contents: contents, mode: info.st_mode & 0o100 != 0 ? 0o755 : 0o644)
    }
}

/// Everything that goes into an image.
public struct ImageBuildRequest: Sendable {
    public var module: [UInt8]
    /// Only for messages.
    public var modulePath: String
    public var reference: ImageReference
    public var platform: OCI.Platform
    /// Absolute path of the module inside the image; the config's `Entrypoint` is `[entrypoint]`.
    public var entrypoint: String = "/app.wasm"
    /// The config's `Cmd`: arguments after the module path.
    public var arguments: [String] = []
    /// `KEY=VALUE` entries for the config's `Env`.
    public var environment: [String] = []
    public var files: [ImageFile] = []
    /// Seconds since 1970 for `created`, `history` and every tar entry's mtime.
    public var created: UInt64 = 0
    /// Adds `module.wasm.image/variant: compat-smart` to the manifest's annotations.
    public var wasmVariantAnnotation = true

    public init(module: [UInt8], modulePath: String, reference: ImageReference, platform: OCI.Platform) {
        self.module = module
        self.modulePath = modulePath
        self.reference = reference
        self.platform = platform
    }
}

/// A built image: the archive's bytes and what is in it.
public struct BuiltImage: Sendable {
    public var archive: [UInt8]
    public var reference: ImageReference
    public var platform: OCI.Platform
    public var index: OCI.Index
    public var manifest: OCI.Manifest
    public var config: OCI.ImageConfig
    public var manifestDigest: String
    public var configDigest: String
    public var layerDigest: String
    public var layerSize: Int
}

public enum ImageBuilder {
    public static let createdBy = "wasmletctl image build"

    /// `sha256:<hex>` of `bytes`.
    public static func digest(of bytes: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(bytes))
        return "sha256:" + hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Checks the 8-byte header of a core Wasm module (`\0asm`, version 1) and says what the
    /// file looks like when it is something else.
    public static func validateModule(_ bytes: [UInt8], path: String) throws {
        let magic: [UInt8] = [0x00, 0x61, 0x73, 0x6d]
        let head = Array(bytes.prefix(8))
        func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined(separator: " ") }
        if bytes.isEmpty { throw ImageError.notAWasmModule(path: path, "the file is empty") }
        if Array(head.prefix(4)) != magic {
            var why = "it starts with \(hex(Array(head.prefix(4)))), not the magic 00 61 73 6d (\"\\0asm\")"
            if head.starts(with: [0x7f, 0x45, 0x4c, 0x46]) {
                why += "; it is an ELF executable, not a module compiled for wasm32-wasi"
            } else if String(decoding: bytes.prefix(64), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                .hasPrefix("(module")
            {
                why += "; it looks like WebAssembly text: convert it with wat2wasm first"
            } else if head.starts(with: [0x1f, 0x8b]) {
                why += "; it is gzip-compressed"
            }
            throw ImageError.notAWasmModule(path: path, why)
        }
        if head.count < 8 {
            throw ImageError.notAWasmModule(path: path, "it is \(bytes.count) bytes, shorter than the 8-byte module header")
        }
        let version = Array(head[4..<8])
        if version == [0x0d, 0x00, 0x01, 0x00] {
            throw ImageError.notAWasmModule(
                path: path, "it is a WebAssembly component (component model); wasmlet runs core modules (WASI preview1)")
        }
        if version != [0x01, 0x00, 0x00, 0x00] {
            throw ImageError.notAWasmModule(path: path, "its version field is \(hex(version)), not 01 00 00 00")
        }
    }

    /// An absolute image path split into its components: no empty, "." or ".." components.
    static func imagePathComponents(_ path: String) throws -> [String] {
        guard path.hasPrefix("/") else { throw ImageError.invalidPath(path, "it must be absolute (start with /)") }
        let components = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard !path.dropFirst().isEmpty, components.allSatisfy({ !$0.isEmpty }) else {
            throw ImageError.invalidPath(path, "it must name a file, without empty components or a trailing /")
        }
        guard components.allSatisfy({ $0 != "." && $0 != ".." }) else {
            throw ImageError.invalidPath(path, "\".\" and \"..\" are not allowed")
        }
        guard !path.utf8.contains(0) else { throw ImageError.invalidPath(path, "it contains a NUL byte") }
        return components.map(String.init)
    }

    /// Builds the archive in memory. Same request, same bytes.
    public static func build(_ request: ImageBuildRequest) throws -> BuiltImage {
        try validateModule(request.module, path: request.modulePath)
        if request.reference.digest != nil {
            throw ImageError.digestInReference(request.reference.description)
        }
        for entry in request.environment {
            do { _ = try EnvironmentSyntax.split(entry) } catch { throw ImageError.invalidEnvironment(entry) }
        }
        let timestamp = try rfc3339(request.created)

        // Layer: the module and the extra files, with a directory entry for every parent.
        var files: [(components: [String], display: String, contents: [UInt8], mode: UInt32)] = [
            (try imagePathComponents(request.entrypoint), request.entrypoint, request.module, 0o755)
        ]
        for file in request.files {
            files.append((try imagePathComponents(file.destination), file.destination, file.contents, file.mode))
        }
        var directories = Set<[String]>()
        for file in files where file.components.count > 1 {
            for length in 1..<file.components.count { directories.insert(Array(file.components.prefix(length))) }
        }
        for (index, file) in files.enumerated() {
            if let other = files[..<index].first(where: { $0.components == file.components }) {
                throw ImageError.conflictingPaths(other.display, file.display)
            }
            if directories.contains(file.components),
                let child = files.first(where: { $0.components.count > file.components.count && $0.components.starts(with: file.components) })
            {
                throw ImageError.conflictingPaths(file.display, child.display)
            }
        }
        enum Entry { case directory, file([UInt8], UInt32) }
        var entries: [([String], Entry)] = directories.map { ($0, .directory) }
        entries += files.map { ($0.components, .file($0.contents, $0.mode)) }
        // Component-wise order puts every directory before what it contains.
        entries.sort { $0.0.lexicographicallyPrecedes($1.0) }
        var layerTar = TarWriter()
        do {
            for (components, entry) in entries {
                let path = components.joined(separator: "/")
                switch entry {
                case .directory: try layerTar.addDirectory(path, mode: 0o755, modificationTime: request.created)
                case .file(let contents, let mode): try layerTar.addFile(path, contents: contents, mode: mode, modificationTime: request.created)
                }
            }
        } catch let error as TarError {
            throw ImageError.tar(error)
        }
        let layer = layerTar.finish()
        let layerDigest = digest(of: layer)

        let config = OCI.ImageConfig(
            created: timestamp,
            architecture: request.platform.architecture,
            os: request.platform.os,
            variant: request.platform.variant,
            config: OCI.ImageConfig.ExecutionConfig(
                entrypoint: [request.entrypoint],
                cmd: request.arguments.isEmpty ? nil : request.arguments,
                env: request.environment.isEmpty ? nil : request.environment),
            rootfs: OCI.ImageConfig.RootFS(diffIDs: [layerDigest]),
            history: [
                OCI.ImageConfig.History(
                    created: timestamp, createdBy: createdBy,
                    comment: "WebAssembly module \(digest(of: request.module)) at \(request.entrypoint)")
            ])
        let configBytes = try OCI.encode(config)
        let configDigest = digest(of: configBytes)

        let manifest = OCI.Manifest(
            config: OCI.Descriptor(mediaType: OCI.configMediaType, digest: configDigest, size: configBytes.count),
            layers: [OCI.Descriptor(mediaType: OCI.layerMediaType, digest: layerDigest, size: layer.count)],
            annotations: request.wasmVariantAnnotation ? [OCI.wasmVariantAnnotation: OCI.wasmVariantCompatSmart] : nil)
        let manifestBytes = try OCI.encode(manifest)
        let manifestDigest = digest(of: manifestBytes)

        let index = OCI.Index(manifests: [
            OCI.Descriptor(
                mediaType: OCI.manifestMediaType, digest: manifestDigest, size: manifestBytes.count,
                annotations: [
                    OCI.imageNameAnnotation: request.reference.description,
                    OCI.refNameAnnotation: request.reference.tag ?? ImageReference.defaultTag,
                ],
                platform: request.platform)
        ])

        var archive = TarWriter()
        do {
            try archive.addFile("oci-layout", contents: try OCI.encode(OCI.Layout()), modificationTime: request.created)
            try archive.addFile("index.json", contents: try OCI.encode(index), modificationTime: request.created)
            try archive.addDirectory("blobs", modificationTime: request.created)
            try archive.addDirectory("blobs/sha256", modificationTime: request.created)
            for (blobDigest, bytes) in [(layerDigest, layer), (configDigest, configBytes), (manifestDigest, manifestBytes)] {
                try archive.addFile(
                    "blobs/sha256/" + blobDigest.dropFirst("sha256:".count), contents: bytes,
                    modificationTime: request.created)
            }
        } catch let error as TarError {
            throw ImageError.tar(error)
        }
        return BuiltImage(
            archive: archive.finish(), reference: request.reference, platform: request.platform, index: index,
            manifest: manifest, config: config, manifestDigest: manifestDigest, configDigest: configDigest,
            layerDigest: layerDigest, layerSize: layer.count)
    }

    /// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
    /// `path` is either the old file or the complete new one. The directory must exist; `path`
    /// must not be a directory. Returns true when it replaced an existing file.
    @discardableResult
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws -> Bool {
        let slash = path.lastIndex(of: "/")
        let parent = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !base.isEmpty, base != ".", base != ".." else {
            throw ImageError.io("cannot write \(path): it is a directory")
        }
        var info = stat()
        guard stat(parent, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw ImageError.io("cannot write \(path): the directory \(parent) does not exist")
        }
        var existing = stat()
        let replacing = lstat(path, &existing) == 0
        if replacing && existing.st_mode & S_IFMT == S_IFDIR {
            throw ImageError.io("cannot write \(path): it is a directory")
        }
        let temporary = parent + "/." + base + ".tmp-" + String(getpid()) + "-" + String(UInt32.random(in: .min ... .max), radix: 16)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ImageError.io("cannot write \(path): creating \(temporary): \(String(cString: strerror(errno)))")
        }
        var failure: String?
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                offset += written
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if failure == nil && rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw ImageError.io("cannot write \(path): \(failure)")
        }
        return replacing
    }

    /// RFC 3339 in UTC with seconds: `1970-01-01T00:00:00Z`.
    public static func rfc3339(_ seconds: UInt64) throws -> String {
        var time = time_t(clamping: seconds)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil else { throw ImageError.invalidTimestamp(String(seconds)) }
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// `now`, `@SECONDS` or plain seconds since 1970, or RFC 3339 (`2024-05-01T12:00:00Z`,
    /// `2024-05-01T14:00:00+02:00`, fractions of a second dropped).
    public static func parseTimestamp(_ text: String, now: Date = Date()) throws -> UInt64 {
        if text == "now" { return UInt64(max(0, now.timeIntervalSince1970)) }
        let digits = text.hasPrefix("@") ? String(text.dropFirst()) : text
        if let seconds = UInt64(digits) { return seconds }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var date = formatter.date(from: text)
        if date == nil {
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            date = formatter.date(from: text)
        }
        guard let date, date.timeIntervalSince1970 >= 0 else { throw ImageError.invalidTimestamp(text) }
        return UInt64(date.timeIntervalSince1970)
    }
}

/// Reads a whole file, with a message naming it on failure.
func readFile(_ path: String) throws -> [UInt8] {
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw ImageError.io("cannot read \(path): \(String(cString: strerror(errno)))")
    }
    defer { try? handle.close() }
    do {
        return Array(try handle.readToEnd() ?? Data())
    } catch {
        throw ImageError.io("cannot read \(path): \(error.localizedDescription)")
    }
}

/// Reads a module file and checks its header.
public func readModule(_ path: String) throws -> [UInt8] {
    var info = stat()
    guard stat(path, &info) == 0 else {
        throw ImageError.io("cannot read \(path): \(String(cString: strerror(errno)))")
    }
    guard info.st_mode & S_IFMT == S_IFREG else { throw ImageError.io("cannot read \(path): not a regular file") }
    let bytes = try readFile(path)
    try ImageBuilder.validateModule(bytes, path: path)
    return bytes
}
