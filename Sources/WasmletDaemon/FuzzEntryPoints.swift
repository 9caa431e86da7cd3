/// The daemon's TOML configuration parser on arbitrary text, for the fuzz target
/// `fuzz-config-toml` (scripts/fuzz.sh). Package-visible only: nothing in the product calls it.
package enum DaemonFuzzEntryPoints {
    /// Parses the text as `--config` would and lays it over the defaults. Errors are the
    /// expected outcome; a crash or a sanitizer report is the finding.
    package static func parseConfiguration(_ input: [UInt8]) {
        let text = String(decoding: input, as: UTF8.self)
        guard let file = try? ConfigurationFile.parse(text, path: "fuzz.toml") else { return }
        var configuration = DaemonConfiguration.defaults(uid: 0, environment: [:])
        file.apply(to: &configuration)
    }
}
