/// What Version reports. The revision comes from the WASMLET_REVISION environment variable at
/// start-up when a packager sets it (SwiftPM has no build-time stamping), else "unknown".
package enum DaemonVersion {
    package static let version = "0.1.0"
    package static let engine = "WasmKit 0.4.2"
    package static let revision: String = {
        if let value = getenv("WASMLET_REVISION").map({ String(cString: $0) }), !value.isEmpty { return value }
        return "unknown"
    }()
}

#if canImport(Glibc)
import Glibc
#endif
