import Foundation

/// The JSON documents of an OCI image layout (image-spec v1.0/v1.1) that an image holding one
/// Wasm module needs. Field names are the spec's; optional fields left nil are omitted.
public enum OCI {
    public static let indexMediaType = "application/vnd.oci.image.index.v1+json"
    public static let manifestMediaType = "application/vnd.oci.image.manifest.v1+json"
    public static let configMediaType = "application/vnd.oci.image.config.v1+json"
    public static let layerMediaType = "application/vnd.oci.image.layer.v1.tar"
    public static let layerGzipMediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let layoutVersion = "1.0.0"

    /// containerd's annotation naming the image that `ctr image import` creates.
    public static let imageNameAnnotation = "io.containerd.image.name"
    /// The OCI annotation for the reference (here the tag) of a manifest in an index.
    public static let refNameAnnotation = "org.opencontainers.image.ref.name"
    /// The manifest annotation of the "compat" Wasm image format (crun, runwasi): the image's
    /// entrypoint is a Wasm module, and a runtime that knows may run it as one.
    public static let wasmVariantAnnotation = "module.wasm.image/variant"
    public static let wasmVariantCompatSmart = "compat-smart"

    public struct Platform: Codable, Equatable, Sendable {
        public var architecture: String
        public var os: String
        public var variant: String?

        public init(architecture: String, os: String, variant: String? = nil) {
            self.architecture = architecture
            self.os = os
            self.variant = variant
        }

        enum CodingKeys: String, CodingKey {
            case architecture, os, variant
        }
    }

    public struct Descriptor: Codable, Equatable, Sendable {
        public var mediaType: String
        public var digest: String
        public var size: Int
        public var annotations: [String: String]?
        public var platform: Platform?

        public init(
            mediaType: String, digest: String, size: Int, annotations: [String: String]? = nil,
            platform: Platform? = nil
        ) {
            self.mediaType = mediaType
            self.digest = digest
            self.size = size
            self.annotations = annotations
            self.platform = platform
        }
    }

    public struct Index: Codable, Equatable, Sendable {
        public var schemaVersion = 2
        public var mediaType: String? = OCI.indexMediaType
        public var manifests: [Descriptor]

        public init(manifests: [Descriptor]) { self.manifests = manifests }
    }

    public struct Manifest: Codable, Equatable, Sendable {
        public var schemaVersion = 2
        public var mediaType: String? = OCI.manifestMediaType
        public var config: Descriptor
        public var layers: [Descriptor]
        public var annotations: [String: String]?

        public init(config: Descriptor, layers: [Descriptor], annotations: [String: String]? = nil) {
            self.config = config
            self.layers = layers
            self.annotations = annotations
        }
    }

    /// The image configuration (`application/vnd.oci.image.config.v1+json`).
    public struct ImageConfig: Codable, Equatable, Sendable {
        public struct ExecutionConfig: Codable, Equatable, Sendable {
            public var entrypoint: [String]?
            public var cmd: [String]?
            public var env: [String]?
            public var workingDir: String?

            enum CodingKeys: String, CodingKey {
                case entrypoint = "Entrypoint"
                case cmd = "Cmd"
                case env = "Env"
                case workingDir = "WorkingDir"
            }
        }

        public struct RootFS: Codable, Equatable, Sendable {
            public var type = "layers"
            public var diffIDs: [String]

            enum CodingKeys: String, CodingKey {
                case type
                case diffIDs = "diff_ids"
            }
        }

        public struct History: Codable, Equatable, Sendable {
            public var created: String?
            public var createdBy: String?
            public var comment: String?

            enum CodingKeys: String, CodingKey {
                case created
                case createdBy = "created_by"
                case comment
            }
        }

        public var created: String?
        public var architecture: String
        public var os: String
        public var variant: String?
        public var config: ExecutionConfig?
        public var rootfs: RootFS
        public var history: [History]?
    }

    public struct Layout: Codable, Equatable, Sendable {
        public var imageLayoutVersion = OCI.layoutVersion
    }

    /// Deterministic JSON: sorted keys, no escaped slashes, no whitespace.
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw ImageError.invalidArchive("\(what) is not valid JSON of the expected shape (\(error))")
        }
    }
}
