// The two envelope messages of ttrpc (ttrpc/request.proto), hand-encoded:
//
//     Request  { service = 1 string, method = 2 string, payload = 3 bytes,
//                timeout_nano = 4 int64, metadata = 5 repeated KeyValue{key = 1, value = 2} }
//     Response { status = 1 google.rpc.Status{code = 1 int32, message = 2 string}, payload = 2 bytes }

/// gRPC status codes the shim produces or looks at.
public enum StatusCode {
    public static let ok: Int32 = 0
    public static let invalidArgument: Int32 = 3
    public static let notFound: Int32 = 5
    public static let alreadyExists: Int32 = 6
    public static let resourceExhausted: Int32 = 8
    public static let failedPrecondition: Int32 = 9
    public static let unimplemented: Int32 = 12
    public static let `internal`: Int32 = 13
    public static let unavailable: Int32 = 14
}

public struct MetadataEntry: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

public struct TTRPCRequest: Sendable, Equatable {
    public var service: String
    public var method: String
    public var payload: [UInt8]
    public var timeoutNano: Int64
    public var metadata: [MetadataEntry]

    public init(
        service: String, method: String, payload: [UInt8], timeoutNano: Int64 = 0, metadata: [MetadataEntry] = []
    ) {
        self.service = service
        self.method = method
        self.payload = payload
        self.timeoutNano = timeoutNano
        self.metadata = metadata
    }

    public init(decoding bytes: [UInt8]) throws(ProtoError) {
        self.init(service: "", method: "", payload: [])
        var reader = ProtoReader(bytes)
        while let field = try reader.next() {
            switch (field.number, field.wireType) {
            case (1, .lengthDelimited): service = reader.string(field)
            case (2, .lengthDelimited): method = reader.string(field)
            case (3, .lengthDelimited): payload = reader.data(field)
            case (4, .varint): timeoutNano = field.int64
            case (5, .lengthDelimited):
                var entry = reader.message(field)
                var key = "", value = ""
                while let inner = try entry.next() {
                    switch (inner.number, inner.wireType) {
                    case (1, .lengthDelimited): key = entry.string(inner)
                    case (2, .lengthDelimited): value = entry.string(inner)
                    default: break
                    }
                }
                metadata.append(MetadataEntry(key, value))
            default: break  // unknown field: skipped
            }
        }
    }

    public func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, service)
        writer.string(2, method)
        writer.data(3, payload)
        writer.int64(4, timeoutNano)
        var bytes = writer.bytes
        bytes.append(contentsOf: ShimMetadata.encode(metadata))
        return bytes
    }
}

public struct TTRPCResponse: Sendable, Equatable {
    public var code: Int32
    public var message: String
    public var payload: [UInt8]

    public init(code: Int32 = StatusCode.ok, message: String = "", payload: [UInt8] = []) {
        self.code = code
        self.message = message
        self.payload = payload
    }

    public static func ok(_ payload: [UInt8] = []) -> TTRPCResponse { TTRPCResponse(payload: payload) }

    public static func error(_ code: Int32, _ message: String) -> TTRPCResponse {
        TTRPCResponse(code: code, message: message)
    }

    public var isOK: Bool { code == StatusCode.ok }

    public init(decoding bytes: [UInt8]) throws(ProtoError) {
        self.init()
        var reader = ProtoReader(bytes)
        while let field = try reader.next() {
            switch (field.number, field.wireType) {
            case (1, .lengthDelimited):
                var status = reader.message(field)
                while let inner = try status.next() {
                    switch (inner.number, inner.wireType) {
                    case (1, .varint): code = inner.int32
                    case (2, .lengthDelimited): message = status.string(inner)
                    default: break  // details: not needed
                    }
                }
            case (2, .lengthDelimited): payload = reader.data(field)
            default: break
            }
        }
    }

    /// An OK response carries no status at all (ttrpc clients treat a missing status as OK).
    public func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        if code != StatusCode.ok {
            writer.message(1) { status in
                status.int32(1, code)
                status.string(2, message)
            }
        }
        writer.data(2, payload)
        return writer.bytes
    }
}
