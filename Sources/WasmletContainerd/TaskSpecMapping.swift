import Foundation
import Glibc
import WasmletAPI
import WasmletConventions
import WasmletRuntime
import WasmletService
import WasmletTTRPC

/// Turns a containerd Create (its request plus the bundle's `config.json`) into an instance
/// spec and its module. Pure apart from reading the rootfs to find the module and the bind sources.
///
/// The mapping (also in README "Running under containerd"):
/// - `process.args[0]` is the module's path inside the rootfs, the rest its arguments; argv[0]
///   stays as written;
/// - `process.env`, `process.cwd` as given;
/// - the rootfs is preopened as `/`, read-only when `root.readonly` is set; bind mounts of
///   directories become preopens at their destination (read-only with `ro`); file binds
///   (`/etc/hosts`, ...) and kernel filesystems (`/proc`, `/dev`, `/sys`) have no WASI meaning
///   and are skipped;
/// - `linux.resources.memory.limit` is the memory cap;
/// - annotations `wasmlet.dev/fuel` (a fuel budget) and `wasmlet.dev/timeout` (a deadline with
///   a unit, `DurationSyntax`: "30s", "1m30s", "500ms"; a bare number is refused) set the other
///   limits. A CPU quota is a rate,
///   not a budget, so it sets neither;
/// - `wasmlet.dev/trigger: http` makes the container an HTTP service (`TaskHTTPTrigger`);
/// - stdio goes to the FIFOs containerd handed over.
enum TaskSpecMapping {
    static let fuelAnnotation = "wasmlet.dev/fuel"
    static let timeoutAnnotation = "wasmlet.dev/timeout"
    static let containerTypeAnnotation = "io.kubernetes.cri.container-type"

    /// Labels the daemon puts on instances it creates for containerd, so they can be told
    /// apart in `wasmletctl list` and their task restored after a daemon restart.
    enum Label {
        static let owner = "wasmlet.dev/owner"
        static let ownerContainerd = "containerd"
        static let bundle = "wasmlet.dev/bundle"
        static let shimPID = "wasmlet.dev/shim-pid"
        static let group = "wasmlet.dev/group"
        static let ttrpcAddress = "wasmlet.dev/ttrpc-address"
        static let containerType = "wasmlet.dev/container-type"
        /// CRI's names, copied so `wasmletctl list` shows which pod a guest belongs to.
        static let copiedAnnotations = [
            "io.kubernetes.cri.container-name", "io.kubernetes.cri.sandbox-name",
            "io.kubernetes.cri.sandbox-namespace",
        ]
    }

    /// The CRI pod sandbox ("pause") container: no module of its own, alive until killed.
    static func isSandbox(_ spec: OCIRuntimeSpec) -> Bool {
        spec.annotations?[containerTypeAnnotation] == "sandbox"
    }

    /// The instance for a container, and its module: the rootfs's, or the built-in module of
    /// `sandboxModuleDigest` for the pod sandbox.
    static func instanceSpec(
        task: Containerd_Task_V2_CreateTaskRequest, spec: OCIRuntimeSpec, identity: ShimIdentity,
        sandboxModuleDigest: String?
    ) throws -> (InstanceSpec, ModuleReference) {
        if task.terminal {
            throw TaskError.invalidSpec("a terminal (ctr -t, tty: true) is not supported for WebAssembly guests")
        }
        var instance = InstanceSpec(
            key: InstanceKey(namespace: identity.namespace, id: task.id),
            labels: labels(task: task, spec: spec, identity: identity), moduleDigest: "",
            stdio: StdioSpec(
                stdin: task.stdin.isEmpty ? nil : task.stdin, stdout: task.stdout.isEmpty ? nil : task.stdout,
                stderr: task.stderr.isEmpty ? nil : task.stderr))

        if let sandboxModuleDigest {
            instance.args = ["pause"]
            return (instance, .digest(sandboxModuleDigest))
        }

        let rootfs = try rootfsPath(bundle: task.bundle, spec: spec)
        guard let args = spec.process?.args, let first = args.first, !first.isEmpty else {
            throw TaskError.invalidSpec(
                "process.args is empty: the first argument must name the .wasm module in the image (set the image's entrypoint, e.g. /app.wasm)")
        }
        let cwd = spec.process?.cwd.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let modulePath = try RootfsPath.resolve(first, in: rootfs, relativeTo: cwd)
        var info = stat()
        guard stat(modulePath, &info) == 0 else {
            throw TTRPCError.notFound("module \(first) not found in the container's rootfs (looked for \(modulePath))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw TaskError.invalidSpec("module \(first) in the container's rootfs is not a regular file")
        }
        instance.args = args
        do {
            instance.environment = try EnvironmentSyntax.table(spec.process?.env ?? [])
        } catch {
            throw TaskError.invalidSpec("process.env: \(error.message)")
        }
        instance.cwd = cwd
        instance.preopens = [PreopenSpec(guestPath: "/", hostPath: rootfs, readOnly: spec.root?.readonly ?? false)]
            + (try bindPreopens(spec.mounts ?? []))
        instance.limits = try limits(spec)
        instance.httpTrigger = try TaskHTTPTrigger.spec(spec.annotations ?? [:])
        return (instance, .path(modulePath))
    }

    static func rootfsPath(bundle: String, spec: OCIRuntimeSpec) throws -> String {
        guard bundle.hasPrefix("/") else { throw TaskError.invalidSpec("bundle path \"\(bundle)\" is not absolute") }
        let root = spec.root?.path ?? "rootfs"
        return root.hasPrefix("/") ? root : (bundle as NSString).appendingPathComponent(root)
    }

    static func labels(task: Containerd_Task_V2_CreateTaskRequest, spec: OCIRuntimeSpec, identity: ShimIdentity) -> [String: String] {
        var labels = [
            Label.owner: Label.ownerContainerd,
            Label.bundle: task.bundle,
            Label.shimPID: String(identity.shimPID),
        ]
        if !identity.group.isEmpty { labels[Label.group] = identity.group }
        if !identity.ttrpcAddress.isEmpty { labels[Label.ttrpcAddress] = identity.ttrpcAddress }
        let annotations = spec.annotations ?? [:]
        if let type = annotations[containerTypeAnnotation] { labels[Label.containerType] = type }
        for key in Label.copiedAnnotations {
            if let value = annotations[key] { labels[key] = value }
        }
        return labels
    }

    /// Kernel and device filesystems a WASI guest cannot use.
    private static let skippedDestinations = ["/proc", "/sys", "/dev"]

    static func bindPreopens(_ mounts: [OCIRuntimeSpec.Mount]) throws -> [PreopenSpec] {
        var preopens: [PreopenSpec] = []
        for mount in mounts {
            let options = mount.options ?? []
            let isBind = mount.type == "bind" || options.contains("bind") || options.contains("rbind")
            guard isBind, let source = mount.source, mount.destination.hasPrefix("/") else { continue }
            if skippedDestinations.contains(where: { mount.destination == $0 || mount.destination.hasPrefix($0 + "/") }) {
                continue
            }
            var info = stat()
            // Files (/etc/hosts, /etc/resolv.conf, termination-log) cannot be WASI preopens.
            guard stat(source, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { continue }
            preopens.append(PreopenSpec(guestPath: mount.destination, hostPath: source, readOnly: options.contains("ro")))
        }
        return preopens
    }

    static func limits(_ spec: OCIRuntimeSpec) throws -> InstanceLimits {
        var limits = InstanceLimits()
        if let memory = spec.linux?.resources?.memory?.limit, memory > 0 {
            limits.memoryBytes = UInt64(memory)
        }
        let annotations = spec.annotations ?? [:]
        if let fuel = annotations[fuelAnnotation] {
            guard let value = UInt64(fuel.trimmingCharacters(in: .whitespaces)), value > 0 else {
                throw TaskError.invalidSpec("annotation \(fuelAnnotation)=\"\(fuel)\" is not a positive integer")
            }
            limits.fuel = value
        }
        if let timeout = annotations[timeoutAnnotation] {
            let milliseconds: UInt64
            do {
                milliseconds = try DurationSyntax.parseMilliseconds(timeout)
            } catch {
                throw TaskError.invalidSpec("annotation \(timeoutAnnotation): \(error.message)")
            }
            guard milliseconds > 0 else {
                throw TaskError.invalidSpec("annotation \(timeoutAnnotation) must be more than 0 (leave it out for none)")
            }
            limits.timeoutMilliseconds = milliseconds
        }
        return limits
    }
}
