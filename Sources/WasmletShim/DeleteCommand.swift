// `containerd-shim-wasmlet-v1 ... -bundle DIR delete`: containerd's cleanup when the shim is gone
// or unreachable. Releases what the shim held (the rootfs mount, a stale socket file), asks
// wasmletd to kill and delete the instance, and prints a DeleteResponse on stdout.

import WasmletConventions

#if canImport(Glibc)
import Glibc
#endif

public enum DeleteCommand {
    /// Budget for the daemon's answer: it kills the guest and waits for it (at most 3 s, longer
    /// than the daemon's 2 s kill escalation) before answering, so allow a little more.
    static let daemonTimeoutMilliseconds: Int64 = 4000

    public static func run(_ arguments: ShimArguments) -> Int32 {
        let bundle = arguments.bundle.isEmpty ? (FileIO.currentDirectory() ?? ".") : arguments.bundle
        let namespace = arguments.namespace.isEmpty ? (ShimContext.environment("NAMESPACE") ?? "") : arguments.namespace
        let group = ShimSocketPath.group(bundle: bundle, id: arguments.id)

        if let error = RootfsMounts.unmountAll(bundle + "/rootfs") { warn(error) }

        let daemonPath = ShimContext.daemonSocketFromEnvironment()
        var metadata = [MetadataEntry(ShimMetadataKey.containerdNamespace, namespace)]
        metadata += ShimMetadata.entries(
            pid: getpid(), namespace: namespace, group: group,
            ttrpcAddress: ShimContext.environment("TTRPC_ADDRESS") ?? "")
        metadata.append(MetadataEntry(ShimMetadataKey.cleanup, "1"))
        let request = TTRPCRequest(
            service: TaskCall.serviceV2, method: "Delete", payload: TaskIDRequest(id: arguments.id).encoded(),
            metadata: metadata)

        var output: [UInt8]
        switch OneShotClient.call(path: daemonPath, requests: [request], timeoutMilliseconds: daemonTimeoutMilliseconds) {
        case .success(let responses) where responses.first?.isOK == true:
            output = responses.first?.payload ?? []
        case .success(let responses):
            // NOT_FOUND is the normal case after a regular Delete: nothing left to clean up.
            let response = responses.first ?? .error(StatusCode.internal, "no answer")
            if response.code != StatusCode.notFound {
                warn("wasmletd refused Delete \(arguments.id): code \(response.code): \(response.message)")
            }
            output = TaskResponses.delete(pid: 0, exit: .lost())
        case .failure(let failure):
            warn("wasmletd: \(failure)")
            output = TaskResponses.delete(pid: 0, exit: .lost())
        }

        // A shim that died leaves its socket file behind; the next `start` would find it too,
        // but removing it here keeps /run/containerd/s clean.
        if !arguments.address.isEmpty && !namespace.isEmpty {
            let socket = ShimSocketPath.path(
                address: arguments.address, namespace: namespace, group: group,
                directory: ShimSocketPath.rememberedDirectory(bundle: bundle))
            removeIfStale(socket)
        }
        return FileIO.writeAll(1, output) ? 0 : 1
    }

    private static func removeIfStale(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        switch UnixSocket.connect(path: path, timeoutMilliseconds: 0) {
        case .success(let fd): close(fd)  // a live shim of the group: leave it
        case .failure(let error) where error.code == ECONNREFUSED: unlink(path)
        case .failure: break
        }
    }

    /// containerd logs the delete command's stderr as cleanup warnings.
    private static func warn(_ message: String) {
        FileIO.writeAll(2, "containerd-shim-wasmlet-v1 delete: \(message)\n")
    }
}
