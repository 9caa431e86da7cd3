import Foundation
import WasmletParserChild

/// The daemon's `--config` text, parsed in a child first (`TOMLParserChild`): a toml++ abort on
/// a SIGHUP reload would otherwise end every guest on the node with the daemon. The child is
/// wasmletd itself with `--parse-config-stdin`.
struct ConfigurationParserChild: Sendable {
    var child: TOMLParserChild

    init(executable: String = "/proc/self/exe", deadline: DispatchTimeInterval = .seconds(10)) {
        child = TOMLParserChild(executable: executable, arguments: ["--parse-config-stdin"], deadline: deadline)
    }

    func check(_ text: String, path: String) throws(ConfigurationError) {
        let verdict: TOMLParserChild.Verdict
        do {
            verdict = try child.run(on: text)
        } catch {
            throw .file(path: path, error.description)
        }
        guard verdict == .finished else { throw .file(path: path, TOMLParserChild.reason(verdict)) }
    }

    /// The child's side: parse stdin as a configuration file; 0 if it is valid, 1 if not.
    static func parseStandardInput() -> Int32 {
        do {
            _ = try ConfigurationFile.parse(TOMLParserChild.readStandardInput(), path: "-")
            return 0
        } catch {
            FileHandle.standardError.write(Data("wasmletd: \(error)\n".utf8))
            return 1
        }
    }
}
