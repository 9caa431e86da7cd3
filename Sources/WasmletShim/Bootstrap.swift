// containerd 2.3's bootstrap protocol (containerd.runtime.bootstrap.v1): at `start` it writes
// BootstrapParams on stdin and first tries to decode stdout as a BootstrapResult, falling back
// to the plain address line. Field numbers from containerd's api/runtime/bootstrap/v1/bootstrap.proto.

public struct BootstrapParams: Equatable, Sendable {
    public var instanceID = ""  // 1
    public var namespace = ""  // 2
    /// LogLevel enum (3): INFO 0, DEBUG -4, TRACE -8, WARN 4, ...
    public var logLevel: Int32 = 0
    public var containerdVersion = ""  // 4
    public var ttrpcAddress = ""  // 5
    public var grpcAddress = ""  // 6
    public var containerdBinary = ""  // 7
    // 8: extensions (Any): runtime options, which this shim has none of.
    /// 9, optional: where the shim should put its socket (containerd's shim `socket_dir` setting).
    public var socketDir: String?

    public init() {}

    /// An open enum: a value counts as the nearest known level, here DEBUG (-4) or TRACE (-8).
    public var debug: Bool { logLevel < -2 }

    /// nil unless `bytes` is a well-formed message whose known fields have the right wire types.
    /// (That alone does not tell it from runtime options, an Any: see `matches`.)
    public static func decode(_ bytes: [UInt8]) -> BootstrapParams? {
        var params = BootstrapParams()
        var reader = ProtoReader(bytes)
        do {
            while let field = try reader.next() {
                if field.number == 3 {
                    guard field.wireType == .varint else { return nil }
                    params.logLevel = field.int32
                    continue
                }
                guard (1...9).contains(field.number) else { continue }
                guard field.wireType == .lengthDelimited else { return nil }
                let text = reader.string(field)
                switch field.number {
                case 1: params.instanceID = text
                case 2: params.namespace = text
                case 4: params.containerdVersion = text
                case 5: params.ttrpcAddress = text
                case 6: params.grpcAddress = text
                case 7: params.containerdBinary = text
                case 9: params.socketDir = text
                default: break
                }
            }
        } catch {
            return nil
        }
        return params
    }

    /// containerd 2.0-2.2 put runtime options (an Any) on stdin, which decodes as params with the
    /// type URL as the id. Genuine params name the task the flags name (as containerd's own shims
    /// check); flags left out (they are marked for removal) are not held against them.
    public func matches(id: String, namespace: String) -> Bool {
        !instanceID.isEmpty && (id.isEmpty || id == instanceID)
            && (namespace.isEmpty || namespace == self.namespace)
    }
}

public enum BootstrapResult {
    /// BootstrapResult{version=1 int32, address=2, protocol=3}. No trailing newline: the bytes
    /// must decode as exactly this message.
    public static func encode(address: String) -> [UInt8] {
        var writer = ProtoWriter()
        writer.int32(1, 2)
        writer.string(2, address)
        writer.string(3, "ttrpc")
        return writer.bytes
    }
}
