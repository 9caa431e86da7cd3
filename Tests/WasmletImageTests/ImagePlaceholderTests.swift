import Testing
@testable import WasmletImage
