import Testing
@testable import WasmletShim
