import WasmletTTRPC

/// Errors of the containerd task service, worded for the user who reads them in `ctr` or
/// `kubectl describe pod`: each says which container and what to fix.
enum TaskError {
    static func invalidSpec(_ message: String) -> TTRPCError { .invalidArgument("bad container spec: \(message)") }
    static func notFound(_ namespace: String, _ id: String) -> TTRPCError {
        .notFound("task \(id) not found in namespace \(namespace)")
    }
    static func unimplemented(_ method: String) -> TTRPCError {
        .unimplemented("\(method) is not supported by the wasmlet runtime (WebAssembly guests have no processes to exec, pause or checkpoint)")
    }
}
