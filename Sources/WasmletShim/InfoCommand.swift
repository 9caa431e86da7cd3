// `containerd-shim-wasmlet-v1 -info`: containerd 2.2+ runs it before task creates, with the
// runtime options (a serialized google.protobuf.Any, possibly nothing) on stdin, and expects a
// serialized containerd.types.RuntimeInfo on stdout:
//   RuntimeInfo{name=1, version=2 RuntimeVersion{version=1, revision=2}, options=3 Any,
//               features=4 Any, annotations=5 map<string,string>}
// No features are announced: wasmlet offers none of the OCI runtime features containerd asks
// about (user namespaces, idmap mounts), and containerd treats "none given" as "unsupported".

public enum InfoCommand {
    public static let runtimeName = "io.containerd.wasmlet.v1"

    public static func run() -> Int32 {
        let options = StandardInput.readToEnd() ?? []
        return FileIO.writeAll(1, encode(options: options)) ? 0 : 1
    }

    /// The RuntimeInfo message; `options` is echoed back (as the runc shim does) when it is a
    /// well-formed message.
    static func encode(options: [UInt8]) -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, runtimeName)
        writer.message(2) { $0.string(1, ShimContext.versionNumber) }
        if !options.isEmpty && isWellFormed(options) {
            writer.message(3, options)
        }
        return writer.bytes
    }

    private static func isWellFormed(_ bytes: [UInt8]) -> Bool {
        var reader = ProtoReader(bytes)
        do {
            while try reader.next() != nil {}
            return true
        } catch {
            return false
        }
    }
}
