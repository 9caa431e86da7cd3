import WasmletRuntime
import WasmletTTRPC

/// What the daemon's services tell about the requests they serve (metrics): each request's
/// outcome from `RequestInterceptor`, admissions and kills from `InstanceService`.
package protocol RequestObserver: Sendable {
    func request(method: String, code: TTRPCStatusCode, duration: Duration)
    func killRequested(_ key: InstanceKey)
    /// A Create or Start (of either API) is being served: from before its module load to after
    /// its record is written.
    func admissionBegan(_ method: String)
    func admissionEnded(_ method: String)
}
