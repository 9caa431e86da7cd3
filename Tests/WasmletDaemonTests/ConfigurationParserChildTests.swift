import Foundation
import Testing
import WasmletTestSupport
@testable import WasmletDaemon

/// `ConfigurationParserChild` with stand-in children (shell scripts): how it reads each way a
/// child can end. The real child, wasmletd on toml++'s aborts, is in ConfigurationParserCrashTests.
@Suite struct ConfigurationParserChildTests {
    private func child(_ script: String, in directory: TemporaryDirectory, deadline: DispatchTimeInterval = .seconds(10))
        throws -> ConfigurationParserChild
    {
        let path = directory.path + "/child.sh"
        try "#!/bin/sh\n\(script)\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return ConfigurationParserChild(executable: path, deadline: deadline)
    }

    /// Exit 0 or 1 both leave the verdict to the daemon's own parse, which gives the line and
    /// column; the child must also have read the whole text from its stdin.
    @Test(arguments: [0, 1])
    func anExitLeavesTheVerdictToTheDaemon(status: Int) throws {
        let directory = try TemporaryDirectory()
        let text = String(repeating: "# a comment line that fills the pipe\n", count: 4000)
        let copy = directory.path + "/copy"
        let check = try child("cat > \(copy); exit \(status)", in: directory)
        try check.check(text, path: "f.toml")
        #expect(try String(contentsOfFile: copy, encoding: .utf8) == text)
    }

    /// Any other status means the child never parsed (a wrong executable, say): no verdict, so
    /// the daemon must not parse the text itself either.
    @Test func anotherExitStatusRefusesTheText() throws {
        let directory = try TemporaryDirectory()
        let check = try child("cat > /dev/null; echo 'Error: unknown option' >&2; exit 64", in: directory)
        #expect {
            try check.check("a = 1\n", path: "f.toml")
        } throws: { error in
            "\(error)" == "configuration file f.toml: the TOML parser check did not run: its child exited with status 64 (Error: unknown option)"
        }
    }

    @Test func aSignalRefusesTheTextWithTheChildsLastLine() throws {
        let directory = try TemporaryDirectory()
        let check = try child("cat > /dev/null; echo 'toml.hpp:1: Assertion x failed.' >&2; kill -SEGV $$", in: directory)
        #expect {
            try check.check("a = 1\n", path: "f.toml")
        } throws: { error in
            "\(error)" == "configuration file f.toml: the TOML parser (toml++, inside TOMLKit) crashed on this text (signal \(SIGSEGV): Segmentation fault) (toml.hpp:1: Assertion x failed.); it is not valid TOML: look for a value, date or bracket out of place"
        }
    }

    /// A child that never ends is killed at the deadline, and the text refused, also when it
    /// never reads a text larger than a pipe holds.
    @Test(.timeLimit(.minutes(1)), arguments: [6, 200_000])
    func aHungChildIsKilledAtTheDeadline(size: Int) throws {
        let directory = try TemporaryDirectory()
        let check = try child("exec sleep 600", in: directory, deadline: .milliseconds(300))
        #expect {
            try check.check(String(repeating: "#", count: size - 1) + "\n", path: "f.toml")
        } throws: { error in
            "\(error)" == "configuration file f.toml: the TOML parser did not finish within 300 ms; the file is refused"
        }
    }

    @Test func aMissingExecutableIsAnError() {
        let check = ConfigurationParserChild(executable: "/nonexistent/wasmletd")
        #expect {
            try check.check("a = 1\n", path: "f.toml")
        } throws: { error in
            "\(error)".hasPrefix("configuration file f.toml: cannot start the parser check /nonexistent/wasmletd: ")
        }
    }
}
