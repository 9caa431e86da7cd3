import WasmletAPI
import WasmletRuntime
import WasmletTTRPC

/// A container's listeners on the daemon side: the sockets the shim created in the pod's
/// network namespace and handed over (ListenerHandoffServer) are claimed by the container's
/// Create, checked against its spec, and handed to the instance.
///
/// The annotation's `[ADDR:]PORT` list is parsed once, by the shim, which binds the sockets
/// (Sources/WasmletConventions/ListenAddress.swift); here only the annotation's text is compared
/// with the one the sockets were made for.
enum TaskListeners {
    static let annotation = "wasmlet.dev/listen"
    /// The instance label listing the bound addresses (`0.0.0.0:8080,[::]:8443`), shown by
    /// `wasmletctl inspect` and `list`.
    static let label = "wasmlet.dev/listeners"

    /// The claimed listeners the Create must use, nil when the spec asks for none. Throws
    /// (having closed `claimed`) when the spec asks for listeners and none, or others, were
    /// handed over. The pod sandbox never gets any: pod annotations reach its spec too.
    static func match(
        spec: OCIRuntimeSpec, claimed: HandedOffListeners?, id: String, handoffSocket: String
    ) throws -> HandedOffListeners? {
        let wanted = TaskSpecMapping.isSandbox(spec) ? nil : spec.annotations?[annotation]
        guard let wanted else {
            claimed?.close()
            return nil
        }
        guard let claimed else {
            throw TTRPCError.failedPrecondition(
                "container \(id) asks for listeners (\(annotation)=\"\(wanted)\") but containerd-shim-wasmlet-v1 handed none to wasmletd (at \(handoffSocket)); the shim creates them in the pod's network namespace: is it up to date?")
        }
        guard claimed.annotation == wanted else {
            claimed.close()
            throw TTRPCError.failedPrecondition(
                "container \(id): the listeners handed over were made for \(annotation)=\"\(claimed.annotation)\", but the spec says \"\(wanted)\"")
        }
        return claimed
    }

    /// Labels the instance with the bound addresses. The descriptors themselves do not go
    /// through the message: the Create hands them to the runtime as `InheritedListener`s
    /// (`HandedOffListeners.handOver` into `InstanceSpec.inheritedListeners`),
    /// which places them in the guest's fd table after its preopens, in order, as it does the
    /// listeners it binds itself (`WASMLET_LISTEN_FDS`, Inspect), and closes them when the
    /// guest exits or is killed, at Delete of an instance never started, and on a failed
    /// Create. Until that handover the Create's own failure paths close them.
    static func attach(_ listeners: HandedOffListeners, to spec: inout InstanceSpec) {
        spec.labels[label] = listeners.bound.joined(separator: ",")
    }
}
