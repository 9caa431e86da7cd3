import Foundation

/// What `wasmletctl image inspect` reports about one image of an OCI archive.
public struct ImageSummary: Sendable {
    /// `io.containerd.image.name`, else `org.opencontainers.image.ref.name`, else nil.
    public var reference: String?
    public var platform: OCI.Platform
    public var manifestDigest: String
    public var manifestAnnotations: [String: String]
    public var entrypoint: [String]
    public var cmd: [String]
    public var env: [String]
    public var created: String?
    public var layers: [OCI.Descriptor]
    /// For the first path of `entrypoint`, when it is found in an uncompressed layer: its size
    /// and whether it starts with a core Wasm module header.
    public var module: (path: String, size: Int, isWasm: Bool)?
}

/// Reads an OCI image-layout archive (as `wasmletctl image build`, `docker save` or
/// `ctr image export` write them) and checks every blob it uses against its digest and size.
public enum ImageArchive {
    public static func inspect(path: String) throws -> [ImageSummary] {
        try inspect(bytes: try readFile(path))
    }

    public static func inspect(bytes: [UInt8]) throws -> [ImageSummary] {
        let tar: TarReader
        do {
            tar = try TarReader(bytes)
        } catch let error as TarError {
            throw ImageError.invalidArchive("not a tar archive (\(error))")
        }
        guard let layoutBytes = tar.contents(of: "oci-layout") else {
            throw ImageError.invalidArchive("no oci-layout file (a Docker-format archive from an old `docker save`?)")
        }
        let layout = try OCI.decode(OCI.Layout.self, from: layoutBytes, what: "oci-layout")
        guard layout.imageLayoutVersion == OCI.layoutVersion else {
            throw ImageError.invalidArchive("oci-layout version \(layout.imageLayoutVersion), expected \(OCI.layoutVersion)")
        }
        guard let indexBytes = tar.contents(of: "index.json") else { throw ImageError.invalidArchive("no index.json") }
        let index = try OCI.decode(OCI.Index.self, from: indexBytes, what: "index.json")

        func blob(_ descriptor: OCI.Descriptor) throws -> ArraySlice<UInt8> {
            let parts = descriptor.digest.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0] == "sha256" else {
                throw ImageError.invalidArchive("unsupported digest \(descriptor.digest)")
            }
            guard let bytes = tar.contents(of: "blobs/sha256/\(parts[1])") else {
                throw ImageError.invalidArchive("blob \(descriptor.digest) is missing")
            }
            guard bytes.count == descriptor.size else {
                throw ImageError.invalidArchive("blob \(descriptor.digest) has \(bytes.count) bytes, its descriptor says \(descriptor.size)")
            }
            guard ImageBuilder.digest(of: bytes) == descriptor.digest else {
                throw ImageError.invalidArchive("blob \(descriptor.digest) does not match its digest")
            }
            return bytes
        }

        var summaries: [ImageSummary] = []
        for descriptor in index.manifests {
            guard descriptor.mediaType == OCI.manifestMediaType
                || descriptor.mediaType == "application/vnd.docker.distribution.manifest.v2+json"
            else {
                throw ImageError.invalidArchive("index entry \(descriptor.digest) is a \(descriptor.mediaType), not an image manifest")
            }
            let manifest = try OCI.decode(OCI.Manifest.self, from: try blob(descriptor), what: "manifest \(descriptor.digest)")
            let config = try OCI.decode(OCI.ImageConfig.self, from: try blob(manifest.config), what: "config \(manifest.config.digest)")
            guard config.rootfs.diffIDs.count == manifest.layers.count else {
                throw ImageError.invalidArchive(
                    "config has \(config.rootfs.diffIDs.count) diff_ids for \(manifest.layers.count) layers")
            }
            let entrypoint = (config.config?.entrypoint ?? []) + (config.config?.cmd ?? [])
            var module: (path: String, size: Int, isWasm: Bool)?
            for (layer, diffID) in zip(manifest.layers, config.rootfs.diffIDs) {
                let bytes = try blob(layer)
                guard layer.mediaType == OCI.layerMediaType || layer.mediaType == "application/vnd.docker.image.rootfs.diff.tar"
                else { continue }
                guard ImageBuilder.digest(of: bytes) == diffID else {
                    throw ImageError.invalidArchive("layer \(layer.digest) is uncompressed but its diff_id is \(diffID)")
                }
                if let first = entrypoint.first, let layerTar = try? TarReader(Array(bytes)),
                    let contents = layerTar.contents(of: first)
                {
                    module = (first, contents.count, (try? ImageBuilder.validateModule(Array(contents.prefix(8)), path: first)) != nil)
                }
            }
            summaries.append(
                ImageSummary(
                    reference: descriptor.annotations?[OCI.imageNameAnnotation] ?? descriptor.annotations?[OCI.refNameAnnotation],
                    platform: descriptor.platform
                        ?? OCI.Platform(architecture: config.architecture, os: config.os, variant: config.variant),
                    manifestDigest: descriptor.digest, manifestAnnotations: manifest.annotations ?? [:],
                    entrypoint: config.config?.entrypoint ?? [], cmd: config.config?.cmd ?? [],
                    env: config.config?.env ?? [], created: config.created, layers: manifest.layers, module: module))
        }
        return summaries
    }
}
