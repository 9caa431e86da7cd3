/// What can go wrong building or reading an image archive; `description` is one line meant for
/// the user.
public enum ImageError: Error, Equatable, CustomStringConvertible {
    case invalidReference(String, String)
    case digestInReference(String)
    case notAWasmModule(path: String, String)
    case invalidPlatform(String)
    case invalidPath(String, String)
    case invalidEnvironment(String)
    case invalidFileMapping(String, String)
    case conflictingPaths(String, String)
    case invalidTimestamp(String)
    case io(String)
    case tar(TarError)
    case invalidArchive(String)

    public var description: String {
        switch self {
        case .invalidReference(let text, let why):
            return "invalid image reference \"\(text)\": \(why)"
        case .digestInReference(let text):
            return "\"\(text)\" pins a digest, but a built image gets its digest from its contents; name it with a tag"
        case .notAWasmModule(let path, let why):
            return "\(path) is not a WebAssembly module: \(why)"
        case .invalidPlatform(let text):
            return "invalid platform \"\(text)\": use linux (this machine's architecture), wasi, linux/ARCH or wasip1/wasm"
        case .invalidPath(let path, let why):
            return "invalid path \"\(path)\" in the image: \(why)"
        case .invalidEnvironment(let text):
            return "invalid environment entry \"\(text)\": expected KEY=VALUE with a non-empty KEY"
        case .invalidFileMapping(let text, let why):
            return "invalid --file \"\(text)\": \(why)"
        case .conflictingPaths(let first, let second):
            return "\(first) and \(second) cannot both be in the image (same path, or one is a directory of the other)"
        case .invalidTimestamp(let text):
            return "invalid time \"\(text)\": use RFC 3339 (2024-05-01T12:00:00Z), @SECONDS since 1970, or now"
        case .io(let message):
            return message
        case .tar(let error):
            return error.description
        case .invalidArchive(let why):
            return "not a usable OCI image archive: \(why)"
        }
    }
}
