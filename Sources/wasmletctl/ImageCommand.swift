import ArgumentParser
import Foundation
import WasmletImage

/// `wasmletctl image build|inspect`: OCI image archives holding a Wasm module, for
/// `ctr image import`. Works offline; never talks to the daemon.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Build and inspect OCI image archives holding a Wasm module (no daemon needed).",
        subcommands: [ImageBuildCommand.self, ImageInspectCommand.self])
}

struct ImageBuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Write an OCI image archive (a tar) holding MODULE, for `ctr image import`.",
        discussion: """
            The image has one uncompressed layer holding MODULE at the entrypoint path (mode \
            0755) and the --file extras, with their parent directories. Its config's Entrypoint \
            is [ENTRYPOINT], Cmd the --arg values, Env the --env entries. The index names the \
            image with the normalized reference (hello -> docker.io/library/hello:latest).

            --platform linux (the default) declares linux/<this machine's architecture>, so \
            containerd and Kubernetes take the image like any other: `ctr image import FILE`. \
            --platform wasi declares wasip1/wasm, which containerd 1.6 imports only with \
            `ctr image import --all-platforms FILE`; use the linux style for Kubernetes. Either \
            way the manifest carries the annotation module.wasm.image/variant=compat-smart.

            The output is deterministic: every time in it is --created (default: \
            $SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00Z), so the same inputs give the same \
            digest. FILE is written through a temporary file and a rename in its directory, \
            which must exist; an existing FILE is replaced (and that is said).
            """)

    @Argument(help: "The .wasm module (a core module: \\0asm, version 1).")
    var module: String

    @Option(name: [.customShort("t"), .customLong("tag")], help: ArgumentHelp("Image reference, e.g. hello, wasmlet/hello:v1, ghcr.io/me/app:1.0.", valueName: "REF"))
    var reference: String

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("The archive to write.", valueName: "FILE.tar"))
    var output: String

    @Option(help: ArgumentHelp("linux (linux/<host arch>), wasi (wasip1/wasm) or OS/ARCH.", valueName: "PLATFORM"))
    var platform: String = "linux"

    @Option(help: ArgumentHelp("Absolute path of the module inside the image.", valueName: "PATH"))
    var entrypoint: String = "/app.wasm"

    @Option(
        name: .customLong("arg"), parsing: .unconditionalSingleValue,
        help: ArgumentHelp("An argument after the module path: the config's Cmd (repeatable, in order).", valueName: "ARG"))
    var arguments: [String] = []

    @Option(
        name: .customLong("env"), parsing: .unconditionalSingleValue,
        help: ArgumentHelp("An environment variable in the config's Env (repeatable).", valueName: "KEY=VALUE"))
    var environment: [String] = []

    @Option(
        name: .customLong("file"),
        help: ArgumentHelp("Also put the regular file SRC at the absolute path DEST (repeatable).", valueName: "SRC:DEST"))
    var files: [String] = []

    @Option(help: ArgumentHelp("Creation time: RFC 3339, @SECONDS, or now.", valueName: "TIME"))
    var created: String?

    @Flag(help: "Leave out the module.wasm.image/variant manifest annotation.")
    var noWasmAnnotation = false

    @Flag(name: [.customShort("q"), .long], help: "Print only the manifest digest.")
    var quiet = false

    func run() throws {
        do {
            let reference = try ImageReference(parsing: self.reference)
            var request = ImageBuildRequest(
                module: try readModule(module), modulePath: module, reference: reference,
                platform: try ImagePlatform.parse(platform))
            request.entrypoint = entrypoint
            request.arguments = arguments
            request.environment = environment
            request.files = try files.map { try ImageFile.load(mapping: $0) }
            if let created {
                request.created = try ImageBuilder.parseTimestamp(created)
            } else if let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"], !epoch.isEmpty {
                request.created = try ImageBuilder.parseTimestamp(epoch)
            }
            request.wasmVariantAnnotation = !noWasmAnnotation
            let image = try ImageBuilder.build(request)
            let replaced = try ImageBuilder.writeAtomically(image.archive, to: output)
            if quiet {
                writeStdout(image.manifestDigest + "\n")
                return
            }
            let platformText = [image.platform.os, image.platform.architecture, image.platform.variant]
                .compactMap { $0 }.joined(separator: "/")
            writeStdout(
                """
                image:      \(image.reference)
                platform:   \(platformText)
                entrypoint: \(([request.entrypoint] + request.arguments).joined(separator: " "))
                manifest:   \(image.manifestDigest)
                layer:      \(image.layerDigest) (\(image.layerSize) bytes)
                wrote:      \(output) (\(image.archive.count) bytes\(replaced ? ", replacing the previous file" : ""))

                """)
        } catch let error as ImageError {
            printError(error.description)
            throw ExitCode.failure
        }
    }
}

struct ImageInspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print what an OCI image archive holds, after checking every blob's digest and size.")

    @Argument(help: "An OCI image-layout tar (from `wasmletctl image build`, `ctr image export`, ...).")
    var archive: String

    func run() throws {
        do {
            let images = try ImageArchive.inspect(path: archive)
            var text = ""
            for (number, image) in images.enumerated() {
                if number > 0 { text += "\n" }
                let platform = [image.platform.os, image.platform.architecture, image.platform.variant]
                    .compactMap { $0 }.joined(separator: "/")
                text += "image:      \(image.reference ?? "(unnamed)")\n"
                text += "platform:   \(platform)\n"
                text += "manifest:   \(image.manifestDigest)\n"
                text += "entrypoint: \((image.entrypoint + image.cmd).joined(separator: " "))\n"
                if !image.env.isEmpty { text += "env:        \(image.env.joined(separator: " "))\n" }
                if let created = image.created { text += "created:    \(created)\n" }
                for (key, value) in image.manifestAnnotations.sorted(by: { $0.key < $1.key }) {
                    text += "annotation: \(key)=\(value)\n"
                }
                for layer in image.layers {
                    text += "layer:      \(layer.digest) \(layer.size) bytes \(layer.mediaType)\n"
                }
                if let module = image.module {
                    text += "module:     \(module.path) \(module.size) bytes\(module.isWasm ? "" : " (NOT a core Wasm module)")\n"
                }
            }
            writeStdout(text)
        } catch let error as ImageError {
            printError("\(archive): \(error.description)")
            throw ExitCode.failure
        }
    }
}
