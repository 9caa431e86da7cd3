import Foundation

/// Parses a configuration text in a child process before the daemon parses it itself.
///
/// TOMLKit bundles toml++, whose parser asserts on some invalid TOML, and SwiftPM builds C and
/// C++ dependencies without NDEBUG, so an assertion aborts the whole process: on a SIGHUP reload,
/// every guest on the node with it. `TOMLPreflight` refuses the kinds of input found so far, with
/// line and column; this contains the kinds not found yet (a read of toml++ 3.4's parser turned up
/// more: `2000-01-01T:00` and `2000-01-01 1` as values both abort it).
///
/// The child is this executable run with `--parse-config-stdin`: it parses the text from its stdin
/// and exits 0 (valid) or 1 (an error). Either way the daemon then parses the same text itself,
/// since the same code on the same bytes cannot abort where the child did not, and reports any
/// error with its line and column. A child ended by a signal, or still running at the deadline,
/// refuses the text with a reason; the daemon goes on with what it had.
struct ConfigurationParserChild: Sendable {
    /// The daemon's own executable (tests name wasmletd's path instead).
    var executable = "/proc/self/exe"
    var deadline: DispatchTimeInterval = .seconds(10)

    func check(_ text: String, path: String) throws(ConfigurationError) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--parse-config-stdin"]
        var environment = ProcessInfo.processInfo.environment
        // An abort is the expected finding here: without this the Swift runtime's backtracer
        // would spend seconds symbolicating it.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let input = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        do {
            try process.run()
        } catch {
            throw .file(path: path, "cannot start the parser check \(executable): \(error)")
        }
        // A child that dies before reading everything must not take the daemon with a SIGPIPE
        // (the runtime ignores it too, but it starts after the configuration is read).
        signal(SIGPIPE, SIG_IGN)
        try? input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
        try? input.fileHandleForWriting.close()
        guard exited.wait(timeout: .now() + deadline) == .success else {
            // SIGKILL: the child inherits an ignored SIGTERM (SignalEvents sets SIG_IGN; exec keeps it).
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
            throw .file(path: path, "the TOML parser did not finish within \(deadline.description); the file is refused")
        }
        let diagnostics = String(decoding: errors.fileHandleForReading.readDataToEndOfFile().prefix(4096), as: UTF8.self)
        guard process.terminationReason == .uncaughtSignal else { return }
        // The child's last line is toml++'s assertion: no help to an operator, but the key to a
        // bug report.
        let lastLine = diagnostics.split(separator: "\n").last.map { " (\($0))" } ?? ""
        let number = process.terminationStatus
        throw .file(
            path: path,
            "the TOML parser (toml++, inside TOMLKit) crashed on this text (signal \(number): \(String(cString: strsignal(number))))\(lastLine); it is not valid TOML: look for a value, date or bracket out of place")
    }

    /// The child's side: parse stdin as a configuration file; 0 if it is valid, 1 if not.
    static func parseStandardInput() -> Int32 {
        let text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        do {
            _ = try ConfigurationFile.parse(text, path: "-")
            return 0
        } catch {
            FileHandle.standardError.write(Data("wasmletd: \(error)\n".utf8))
            return 1
        }
    }
}

extension DispatchTimeInterval {
    fileprivate var description: String {
        switch self {
        case .seconds(let n): "\(n) s"
        case .milliseconds(let n): "\(n) ms"
        default: "its deadline"
        }
    }
}
