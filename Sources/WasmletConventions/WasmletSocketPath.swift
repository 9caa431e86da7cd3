#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where `wasmletd` listens. The order: an explicit path (`--socket`), then `$WASMLET_SOCKET`,
/// then the daemon's own default: `/run/wasmlet/wasmlet.sock` for root; for other users
/// `$XDG_RUNTIME_DIR/wasmlet/wasmlet.sock` when XDG_RUNTIME_DIR is set, else
/// `~/.wasmlet/wasmlet.sock`. Empty values count as unset.
public enum WasmletSocketPath {
    public static let environmentVariable = "WASMLET_SOCKET"
    public static let rootDefault = "/run/wasmlet/wasmlet.sock"

    /// The daemon's default socket for a user (`isRoot`) with this environment.
    public static func daemonDefault(isRoot: Bool, environment: [String: String], homeDirectory: String?) -> String {
        if isRoot { return rootDefault }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return join(runtime, "wasmlet/wasmlet.sock")
        }
        let home = homeDirectory ?? environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? passwdHome() ?? "/"
        return join(home, ".wasmlet/wasmlet.sock")
    }

    /// The socket to use. `environment`, `isRoot` and `homeDirectory` default to this process's.
    public static func resolve(
        explicit: String?,
        environment: [String: String] = currentEnvironment(),
        isRoot: Bool = geteuid() == 0,
        homeDirectory: String? = nil
    ) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty { return fromEnvironment }
        return daemonDefault(isRoot: isRoot, environment: environment, homeDirectory: homeDirectory)
    }

    public static func currentEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }

    private static func join(_ directory: String, _ tail: String) -> String {
        directory.hasSuffix("/") ? directory + tail : directory + "/" + tail
    }

    private static func passwdHome() -> String? {
        guard let entry = getpwuid(geteuid()), let directory = entry.pointee.pw_dir else { return nil }
        return String(cString: directory)
    }
}
