import Foundation
import Testing
import WasmletClient
import WasmletConventions
import WasmletTestSupport

/// `wasmletctl serve --routes`: WAGI's modules.toml, read by WasmletClient.
@Suite struct WAGIModulesFileTests {
    static func withModules(_ body: (String) throws -> Void) throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory.path + "/mods", withIntermediateDirectories: true)
        for name in ["a.wasm", "mods/b.wasm"] { _ = FileManager.default.createFile(atPath: directory.path + "/" + name, contents: Data()) }
        try body(directory.path)
    }

    @Test func routesInOrderWithPathsFromTheFilesDirectory() throws {
        try Self.withModules { directory in
            let text = """
                # comments are fine
                [[module]]
                route = "/api/..."
                module = "mods/b.wasm"

                [[module]]
                route = "/"
                module = "\(directory)/a.wasm"
                """
            let file = try WAGIModulesFile.parse(text, directory: directory, path: "modules.toml")
            #expect(file.routes == [
                .init(route: "/api/...", module: directory + "/mods/b.wasm"), .init(route: "/", module: directory + "/a.wasm"),
            ])
        }
    }

    @Test(arguments: [
        ("[[module]]\nroute = \"/\"\nmodule = \"a.wasm\"\nvolumes = { \"/d\" = \"/tmp\" }", "volumes is not supported by wasmlet"),
        ("[[module]]\nroute = \"/\"\nmodule = \"a.wasm\"\nentrypoint = \"run\"", "entrypoint is not supported"),
        ("[[module]]\nroute = \"/\"\nmodule = \"a.wasm\"\ncolour = 1", "unknown key colour"),
        ("[[module]]\nroute = \"/\"\nmodule = \"bindle:example/1.0\"", "not a file path (bindle: references"),
        ("[[module]]\nroute = \"/\"\nmodule = \"missing.wasm\"", "cannot read module"),
        // TOMLKit's parser aborted the process on this (TOMLPreflight).
        ("[[modulé]]\nroute = \"/\"", "modules.toml: line 1, column 8: a non-ASCII character outside a string or comment"),
        ("[[module]]\nmodule = \"a.wasm\"", "route (a string such as \"/...\") is required"),
        ("[[module]]\nroute = \"/\"", "module (the path of a .wasm file) is required"),
        ("[[module]]\nroute = 5\nmodule = \"a.wasm\"", "route (a string"),
        ("title = \"x\"", "unknown key title"),
        ("", "no [[module]] entries"),
        ("[[module]\nroute = \"/\"", "modules.toml: line 1"),
    ])
    func badFilesAreRefusedByName(text: String, expected: String) throws {
        try Self.withModules { directory in
            #expect {
                _ = try WAGIModulesFile.parse(text, directory: directory, path: "modules.toml")
            } throws: { error in
                "\(error)".contains(expected)
            }
        }
    }
}
