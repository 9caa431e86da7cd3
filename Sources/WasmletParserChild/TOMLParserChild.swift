import Foundation

/// Runs a parser on a text in a child process, so that a crash in it ends only the child.
///
/// TOMLKit bundles toml++, whose parser asserts on some invalid TOML, and SwiftPM builds C++
/// dependencies without NDEBUG, so each assertion aborts the process that parses. `TOMLPreflight`
/// refuses the kinds found so far, with line and column; this contains the kinds not found yet
/// (a read of toml++ 3.4's parser turned up more: `2000-01-01T:00` and `2000-01-01 1` as values).
///
/// The child is an executable (by default this one, through /proc/self/exe) run with
/// `arguments`: it reads the text from its stdin, parses it, and exits 0 if the text is valid or
/// 1 if not. Either way the caller then parses the same text itself: the same code on the same
/// bytes cannot crash where the child did not, and the caller's own parse gives the error with
/// its line and column. A child ended by a signal, or still running at the deadline, is the
/// verdict: the caller refuses the text with that reason.
public struct TOMLParserChild: Sendable {
    public enum Verdict: Sendable, Equatable {
        /// Exited 0 or 1: the child parsed the text, so it is safe for this process to parse.
        case finished
        /// Exited with another status: it did not get to parse (a wrong executable, say).
        case failed(status: Int32, lastLine: String?)
        /// Ended by `signal`; `lastLine` is its last line on stderr (for toml++, the assertion).
        case crashed(signal: Int32, lastLine: String?)
        /// Still running at the deadline, and killed.
        case hung(DispatchTimeInterval)
    }

    public var executable: String
    public var arguments: [String]
    public var deadline: DispatchTimeInterval

    public init(executable: String = "/proc/self/exe", arguments: [String], deadline: DispatchTimeInterval = .seconds(10)) {
        self.executable = executable
        self.arguments = arguments
        self.deadline = deadline
    }

    /// Throws only when the child cannot be started; the message names the executable.
    public func run(on text: String) throws(TOMLParserChildError) -> Verdict {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        // A crash is an expected outcome here: without this the Swift runtime's backtracer would
        // spend seconds symbolicating it.
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
            throw TOMLParserChildError("cannot start the parser check \(executable): \(error)")
        }
        // A child that dies before reading everything must not take this process with a SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        // Written from another thread: a child that stops reading must not block this one past
        // the deadline (a pipe holds 64 KiB); once the child is gone the write fails and ends.
        let writer = DispatchGroup()
        let stdin = input.fileHandleForWriting
        DispatchQueue.global().async(group: writer) {
            try? stdin.write(contentsOf: Data(text.utf8))
            try? stdin.close()
        }
        defer { writer.wait() }
        guard exited.wait(timeout: .now() + deadline) == .success else {
            // SIGKILL: the child inherits an ignored SIGTERM from a daemon (SIG_IGN survives exec).
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
            return .hung(deadline)
        }
        let diagnostics = String(decoding: errors.fileHandleForReading.readDataToEndOfFile().prefix(4096), as: UTF8.self)
        let lastLine = diagnostics.split(separator: "\n").last.map(String.init)
        guard process.terminationReason == .exit else {
            return .crashed(signal: process.terminationStatus, lastLine: lastLine)
        }
        return [0, 1].contains(process.terminationStatus) ? .finished : .failed(status: process.terminationStatus, lastLine: lastLine)
    }

    /// Why a text is refused, for a verdict other than `.finished`: "the TOML parser (toml++,
    /// inside TOMLKit) crashed on this text (signal 6: Aborted) (...); ...".
    public static func reason(_ verdict: Verdict) -> String {
        switch verdict {
        case .finished:
            return "the TOML parser finished"
        case .crashed(let number, let lastLine):
            let line = lastLine.map { " (\($0))" } ?? ""
            return "the TOML parser (toml++, inside TOMLKit) crashed on this text (signal \(number): \(String(cString: strsignal(number))))\(line); it is not valid TOML: look for a value, date or bracket out of place"
        case .failed(let status, let lastLine):
            let line = lastLine.map { " (\($0))" } ?? ""
            return "the TOML parser check did not run: its child exited with status \(status)\(line)"
        case .hung(let deadline):
            return "the TOML parser did not finish within \(deadline.words); the file is refused"
        }
    }

    /// The child's side: its whole stdin as text.
    public static func readStandardInput() -> String {
        String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    }
}

public struct TOMLParserChildError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension DispatchTimeInterval {
    fileprivate var words: String {
        switch self {
        case .seconds(let n): "\(n) s"
        case .milliseconds(let n): "\(n) ms"
        default: "its deadline"
        }
    }
}
