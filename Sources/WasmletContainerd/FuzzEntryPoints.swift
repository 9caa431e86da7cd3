import Foundation
import Glibc
import WasmletAPI

/// The containerd adapter's config.json mapping on arbitrary bytes, for the fuzz target
/// `fuzz-oci-config` (scripts/fuzz.sh). Package-visible only: nothing in the product calls it.
package enum ContainerdFuzzEntryPoints {
    /// A bundle whose rootfs has a module, a directory and symlinks that try to leave it.
    private static let bundle: String = {
        var template = Array("/tmp/wasmlet-fuzz-bundle.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { fatalError("mkdtemp: \(String(cString: strerror(errno)))") }
        let bundle = String(cString: made)
        let rootfs = bundle + "/rootfs"
        mkdir(rootfs, 0o755)
        mkdir(rootfs + "/bin", 0o755)
        FileManager.default.createFile(atPath: rootfs + "/app.wasm", contents: Data([0, 0x61, 0x73, 0x6D, 1, 0, 0, 0]))
        FileManager.default.createFile(atPath: rootfs + "/bin/tool.wasm", contents: Data([0, 0x61, 0x73, 0x6D, 1, 0, 0, 0]))
        symlink("../../../../etc", rootfs + "/up")
        symlink("/etc", rootfs + "/absolute")
        symlink("bin/tool.wasm", rootfs + "/relative")
        symlink("loop", rootfs + "/loop")
        // Removed when the fuzzer or the replay exits (libFuzzer exits through exit() too).
        atexit { try? FileManager.default.removeItem(atPath: ContainerdFuzzEntryPoints.bundle) }
        return bundle
    }()

    /// Decodes the bytes as a config.json and maps it to an instance as Create does. Errors are
    /// the expected outcome. The property checked: a module path the mapping accepts lies
    /// inside the bundle's rootfs, whatever the spec's args, cwd and symlinks say.
    package static func mapSpec(_ input: [UInt8]) {
        guard let spec = try? OCIRuntimeSpec.decode(Data(input), path: "config.json") else { return }
        _ = TaskSpecMapping.isSandbox(spec)
        var task = Containerd_Task_V2_CreateTaskRequest()
        task.id = "fuzz"
        task.bundle = bundle
        let identity = ShimIdentity(namespace: "fuzz", shimPID: 1, group: "fuzz", ttrpcAddress: "", isCleanup: false)
        guard let (instance, module) = try? TaskSpecMapping.instanceSpec(
            task: task, spec: spec, identity: identity, sandboxModuleDigest: nil)
        else { return }
        let rootfs = (try? TaskSpecMapping.rootfsPath(bundle: bundle, spec: spec)) ?? ""
        if case .path(let path) = module {
            let parts = path.split(separator: "/")
            precondition(path.hasPrefix(rootfs + "/") && !parts.contains(".."), "module path \(path) is outside the rootfs \(rootfs)")
        }
        precondition(instance.preopens.first?.hostPath == rootfs, "the first preopen is not the rootfs")
    }
}

extension ShimIdentity {
    init(namespace: String, shimPID: UInt32, group: String, ttrpcAddress: String, isCleanup: Bool) {
        self.namespace = namespace
        self.shimPID = shimPID
        self.group = group
        self.ttrpcAddress = ttrpcAddress
        self.isCleanup = isCleanup
    }
}
