import Foundation

/// `wasmletd --check-config`, and the child side of `ConfigurationParserChild`.
public enum ConfigurationCheck {
    /// Resolves the configuration as a starting daemon would (the file parsed in a child first,
    /// then the flags) and says whether it would start: 0 and "configuration OK", or 2 (the
    /// daemon's own exit status for a bad configuration) and the reason.
    public static func run(options: DaemonOptions) -> Int32 {
        do {
            let configuration = try DaemonConfiguration.resolve(options: options, parserChild: ConfigurationParserChild())
            let source = configuration.configFile.map { "file \($0) and flags" } ?? "no --config file: defaults and flags"
            print("wasmletd: configuration OK (\(source))")
            return 0
        } catch {
            FileHandle.standardError.write(Data("wasmletd: \(error)\n".utf8))
            return 2
        }
    }

    /// `--parse-config-stdin`: the child `ConfigurationParserChild` runs.
    public static func parseStandardInput() -> Int32 {
        ConfigurationParserChild.parseStandardInput()
    }
}
