import WasmletRuntime
import WasmletTTRPC

/// What RuntimeService tells about the requests it serves.
package protocol RequestObserver: Sendable {
    func request(method: String, code: TTRPCStatusCode, duration: Duration)
    func killRequested(_ key: InstanceKey)
    /// A Create or Start (of either API) is being served: from before its module load to after
    /// its record is written.
    func admissionBegan(_ method: String)
    func admissionEnded(_ method: String)
}
