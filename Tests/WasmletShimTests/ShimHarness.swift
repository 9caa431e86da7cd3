import Foundation
import SwiftProtobuf
import Testing
import WasmletAPI
import WasmletTTRPC
import WasmletTestSupport

#if canImport(Glibc)
import Glibc
#endif

var shimBinaryPath: String { productsDirectory() + "/containerd-shim-wasmlet-v1" }

struct ProcessResult {
    var status: Int32
    var stdout: Data
    var stderr: String
    var elapsed: Duration
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs `executable` to completion with stdout/stderr in files (a pipe would keep the test
/// waiting for EOF if the shim's detached child kept it), as a ChildProcess (posix_spawn and
/// waitpid; see there why not Foundation's Process). `status` is the exit code, or minus the
/// signal number. `timeout` is a hang guard (the machine is shared and may be loaded), not a
/// speed check: reaching it records an issue and kills the process.
func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String], directory: String,
    stdin: String = "/dev/null", timeout: Duration = .seconds(60)
) async throws -> ProcessResult {
    let base = NSTemporaryDirectory() + "wshim-\(UUID().uuidString)"
    defer {
        unlink(base + ".out")
        unlink(base + ".err")
    }
    let clock = ContinuousClock()
    let started = clock.now
    let child = try ChildProcess(
        executable, arguments, environment: environment, directory: directory,
        stdin: stdin, stdout: base + ".out", stderr: base + ".err")
    let termination: ChildProcess.Termination
    // Polled every 2 ms at most: `elapsed` is what measureStartLatencyAndIdleMemory reports.
    if let ended = await child.wait(timeout: timeout, maxInterval: .milliseconds(2)) {
        termination = ended
    } else {
        Issue.record("\(executable) \(arguments) did not exit within \(timeout) (hang guard); killing it")
        termination = child.killAndReap()
    }
    let elapsed = clock.now - started
    return ProcessResult(
        status: termination.status,
        stdout: FileManager.default.contents(atPath: base + ".out") ?? Data(),
        stderr: String(decoding: FileManager.default.contents(atPath: base + ".err") ?? Data(), as: UTF8.self),
        elapsed: elapsed)
}

/// True while `pid` exists and is not a zombie.
func processIsAlive(_ pid: Int32) -> Bool {
    guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    // Format: "pid (comm) S ...": the state follows the last ')'.
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}

/// One test's world: a temporary bundle and socket directory, the environment containerd would
/// give the shim, and cleanup of every shim process started with this harness's namespace.
final class ShimHarness: @unchecked Sendable {
    let directory: String
    let bundle: String
    let socketDirectory: String
    let daemonSocket: String
    let eventsSocket: String
    /// As containerd passes it: an address with the unix:// scheme.
    var ttrpcAddress: String { "unix://" + eventsSocket }
    /// Unique per harness, so stray shims can be found by their command line.
    let namespace: String
    let containerdAddress = "/run/containerd-test/containerd.sock"
    let sandboxID: String?

    init(sandboxID: String? = nil) throws {
        let token = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        directory = "/tmp/wsh-\(token)"
        bundle = directory + "/bundle"
        socketDirectory = directory + "/s"
        daemonSocket = directory + "/d.sock"
        eventsSocket = directory + "/e.sock"
        namespace = "shimtest-\(token)"
        self.sandboxID = sandboxID
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        var annotations = #""io.kubernetes.cri.container-type": "container""#
        if let sandboxID { annotations += #", "io.kubernetes.cri.sandbox-id": "\#(sandboxID)""# }
        let spec = #"{"ociVersion": "1.0.2", "process": {"args": ["/app.wasm"]}, "annotations": {\#(annotations)}}"#
        try spec.write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["WASMLET_SHIM_SOCKET_DIR"] = socketDirectory
        env["WASMLET_SOCKET"] = daemonSocket
        env["TTRPC_ADDRESS"] = ttrpcAddress
        env["GRPC_ADDRESS"] = containerdAddress
        env["NAMESPACE"] = namespace
        return env
    }

    func flags(id: String) -> [String] {
        ["-namespace", namespace, "-address", containerdAddress, "-publish-binary", "/bin/false", "-id", id, "-debug"]
    }

    /// `stdin`: a file (or FIFO) the shim reads as its standard input, as containerd's pipe.
    func start(id: String, environment extra: [String: String] = [:], stdin: String = "/dev/null") async throws
        -> ProcessResult
    {
        try await runProcess(
            shimBinaryPath, flags(id: id) + ["start"], environment: environment.merging(extra) { $1 },
            directory: bundle, stdin: stdin)
    }

    func delete(id: String) async throws -> ProcessResult {
        try await runProcess(
            shimBinaryPath, flags(id: id) + ["-bundle", bundle, "delete"], environment: environment, directory: bundle)
    }

    /// The socket path `start` should print for `group`.
    func expectedSocket(group: String) async throws -> String {
        socketDirectory + "/" + (try await sha256Hex(containerdAddress + "/" + namespace + "/" + group))
    }

    /// Serving shims of this harness (found by the unique namespace in their command line).
    func shimProcesses() -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return arguments.contains(namespace) && arguments.last == "start" && processIsAlive(pid)
        }
    }

    func cleanup() {
        for pid in shimProcesses() { kill(pid, SIGKILL) }
        _ = RootfsUnmount.detach(bundle + "/rootfs")
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `body`, then cleans up even when it throws.
    func run(_ body: (ShimHarness) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            cleanup()
            throw error
        }
        cleanup()
    }
}

enum RootfsUnmount {
    static func detach(_ path: String) -> Int32 { umount2(path, Int32(MNT_DETACH)) }
}

func sha256Hex(_ text: String) async throws -> String {
    // Independent of the shim's SHA-256: ask coreutils.
    let input = NSTemporaryDirectory() + "wshim-\(UUID().uuidString).in"
    try text.write(toFile: input, atomically: false, encoding: .utf8)
    defer { unlink(input) }
    let result = try await runProcess(
        "/usr/bin/sha256sum", [input], environment: ["LC_ALL": "C"], directory: "/")
    guard result.status == 0 else { throw ChildProcess.SpawnError(description: "sha256sum failed: \(result.stderr)") }
    return String(result.text.prefix(64))
}

/// Task-service calls from the test, playing containerd.
struct TaskClient {
    let client: TTRPCClient
    let namespace: String

    static func connect(_ address: String, namespace: String) async throws -> TaskClient {
        TaskClient(client: try await TTRPCClient.connect(unixSocketPath: address), namespace: namespace)
    }

    func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: RPCMethod<Request, Response>, _ request: Request, timeout: Duration = .seconds(10)
    ) async throws -> Response {
        try await client.call(
            service: method.service, method: method.method, request: request, responseType: Response.self,
            timeout: timeout, metadata: [TTRPCMetadata.containerdNamespaceKey: namespace])
    }

    func close() async { await client.close() }
}
