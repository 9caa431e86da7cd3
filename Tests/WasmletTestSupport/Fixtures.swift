import Foundation

/// The repository root, from this file's path (Tests/WasmletTestSupport/Fixtures.swift).
package let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

package func example(_ name: String) -> String { repositoryRoot + "/examples/build/\(name).wasm" }

/// The directory of this test binary, where SwiftPM also puts the executables the tests run
/// (`wasmletd`, `wasmletctl`, the shim, `wasmlet-sd-probe`): each test target that runs one
/// depends on it, so `swift build --build-tests` builds it.
package func productsDirectory() -> String {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return (executable as NSString).deletingLastPathComponent
}

package var daemonPath: String { productsDirectory() + "/wasmletd" }
