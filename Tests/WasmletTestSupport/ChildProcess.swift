// Part of WasmletTestSupport, which every test target depends on.

import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process spawned with posix_spawn and reaped with waitpid(WNOHANG) polling.
///
/// Not Foundation's `Process`: on Linux, `Process` learns that a child exited from EOF on a
/// socketpair end that the child inherits. Tests run in parallel in one process, so another
/// child spawned at the same moment (a long-lived `wasmletd`, say) can inherit that end too, and
/// then the exit goes unnoticed until that other process ends. waitpid on our own pid depends on
/// nothing else in the test process, and waiting for it never blocks a thread.
package final class ChildProcess: @unchecked Sendable {
    package enum Termination: Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        /// The exit code, or minus the signal number (as Python's returncode): never mistaken
        /// for an exit code, unlike `Process.terminationStatus` or a shell's 128 + signal.
        package var status: Int32 {
            switch self {
            case .exited(let code): code
            case .signaled(let signal): -signal
            }
        }

        package var description: String {
            switch self {
            case .exited(let code): "exited with \(code)"
            case .signaled(let signal): "killed by signal \(signal)"
            }
        }
    }

    package struct SpawnError: Error, CustomStringConvertible {
        package var description: String
        package init(description: String) { self.description = description }
    }

    package let pid: pid_t
    package let executable: String
    package let arguments: [String]
    /// nil while the child runs; set once it has been reaped (its pid may then be reused, so
    /// it is never signalled again).
    private let termination = Mutex<Termination?>(nil)

    /// Spawns `executable` (an absolute path) with exactly `environment`, in `directory` (nil:
    /// this process's), stdin from the file `stdin` (nil: closed), stdout to the file `stdout` and stderr to
    /// `stderr` (both created or truncated; nil stderr shares stdout's descriptor). The child
    /// gets no other descriptor of the test process, an empty signal mask and default signal
    /// dispositions whatever the spawning thread had, and its own process group (as `Process`
    /// gives it).
    package init(
        _ executable: String, _ arguments: [String], environment: [String: String], directory: String? = nil,
        stdin: String? = "/dev/null", stdout: String = "/dev/null", stderr: String? = "/dev/null"
    ) throws {
        self.executable = executable
        self.arguments = arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        func check(_ what: String, _ code: Int32) throws {
            guard code == 0 else { throw SpawnError(description: "\(what): \(String(cString: strerror(code)))") }
        }
        let create = O_WRONLY | O_CREAT | O_TRUNC
        if let stdin {
            try check("open \(stdin)", posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0))
        } else {
            try check("close stdin", posix_spawn_file_actions_addclose(&actions, 0))
        }
        try check("open \(stdout)", posix_spawn_file_actions_addopen(&actions, 1, stdout, create, 0o644))
        if let stderr {
            try check("open \(stderr)", posix_spawn_file_actions_addopen(&actions, 2, stderr, create, 0o644))
        } else {
            try check("dup2", posix_spawn_file_actions_adddup2(&actions, 1, 2))
        }
        var program = executable
        var programArguments = arguments
        if let directory {
            if let addChdir = Self.addChdir {
                try check("chdir \(directory)", addChdir(&actions, directory))
            } else {
                // glibc before 2.29: the shell changes directory, then becomes the program.
                programArguments = ["-c", #"cd "$0" && exec "$@""#, directory, executable] + arguments
                program = "/bin/sh"
            }
        }
        Self.addCloseFromThree(&actions)

        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        sigdelset(&allSignals, SIGKILL)
        sigdelset(&allSignals, SIGSTOP)
        try check("setsigmask", posix_spawnattr_setsigmask(&attributes, &noSignals))
        try check("setsigdefault", posix_spawnattr_setsigdefault(&attributes, &allSignals))
        try check("setpgroup", posix_spawnattr_setpgroup(&attributes, 0))
        let flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP
        try check("setflags", posix_spawnattr_setflags(&attributes, Int16(flags)))

        let argv = ([program] + programArguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        try check("posix_spawn \(program)", posix_spawn(&pid, program, &actions, &attributes, argv, envp))
        self.pid = pid
    }

    // glibc's GNU extensions to the spawn actions, which the Glibc module does not export
    // (spawn.h declares them only under _GNU_SOURCE): looked up at run time.
    private typealias AddChdir = @convention(c) (
        UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>
    ) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// posix_spawn_file_actions_addchdir_np (glibc 2.29+).
    private static let addChdir: AddChdir? = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addchdir_np")
        .map { unsafeBitCast($0, to: AddChdir.self) }

    /// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+).
    private static let addCloseFrom: AddCloseFrom? = dlsym(
        dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np"
    ).map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// Closes every descriptor from 3 up in the child: with glibc's closefrom spawn action
    /// where it has one, otherwise with one close action per descriptor open now.
    private static func addCloseFromThree(_ actions: inout posix_spawn_file_actions_t) {
        if let addCloseFrom, addCloseFrom(&actions, 3) == 0 { return }
        let open = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }
        for fd in open where fd > 2 {
            // One closed meanwhile is harmless: glibc ignores EBADF from a close action.
            _ = posix_spawn_file_actions_addclose(&actions, fd)
        }
    }

    /// How it ended, or nil while it runs. Never blocks: reaps the child if it has exited.
    package func poll() -> Termination? {
        termination.withLock { ended in
            if let ended { return ended }
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && errno == EINTR
            if result == pid { ended = Self.decode(status) }
            return ended
        }
    }

    package var isRunning: Bool { poll() == nil }

    /// Polls until the child ends, sleeping between polls (no thread is blocked): 1 ms, then
    /// doubling up to `maxInterval`. nil after `timeout` (or on cancellation), with the child
    /// still running.
    package func wait(timeout: Duration, maxInterval: Duration = .milliseconds(20)) async -> Termination? {
        let deadline = ContinuousClock.now + timeout
        var interval = min(Duration.milliseconds(1), maxInterval)
        while true {
            if let ended = poll() { return ended }
            if ContinuousClock.now >= deadline { return nil }
            do { try await Task.sleep(for: interval) } catch { return poll() }  // cancelled
            interval = min(interval * 2, maxInterval)
        }
    }

    /// Blocks until the child ends: only for synchronous contexts (a test trait's condition)
    /// and quick tools. Async code uses `wait(timeout:)`.
    package func waitBlocking() -> Termination {
        termination.withLock { ended in
            if let ended { return ended }
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &status, 0) } while result < 0 && errno == EINTR
            let decoded = result == pid ? Self.decode(status) : .signaled(SIGKILL)
            ended = decoded
            return decoded
        }
    }

    /// Runs `executable` to completion with `input` on its stdin and its stdout and stderr
    /// together in one string. `timeout` is a hang guard: past it the child is killed and the
    /// call throws.
    package static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
        input: String? = nil, timeout: Duration = .seconds(60)
    ) async throws -> (termination: Termination, output: String) {
        let base = NSTemporaryDirectory() + "child-\(UUID().uuidString)"
        defer {
            unlink(base + ".in")
            unlink(base + ".out")
        }
        try (input ?? "").write(toFile: base + ".in", atomically: false, encoding: .utf8)
        let child = try ChildProcess(
            executable, arguments, environment: environment, stdin: base + ".in", stdout: base + ".out", stderr: nil)
        guard let ended = await child.wait(timeout: timeout) else {
            child.killAndReap()
            throw SpawnError(description: "\(executable) \(arguments) did not exit within \(timeout)")
        }
        let output = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        return (ended, output)
    }

    /// Sends `number` unless the child has already been reaped.
    package func signal(_ number: Int32) {
        termination.withLock { ended in
            if ended == nil { _ = Glibc.kill(pid, number) }
        }
    }

    /// SIGKILL and reap, for synchronous contexts (deinit, defer). A SIGKILLed process goes at
    /// once, so the blocking waitpid here is brief.
    @discardableResult
    package func killAndReap() -> Termination {
        signal(SIGKILL)
        return waitBlocking()
    }

    /// WIFEXITED is "the low 7 bits are 0", with the exit code in bits 8-15; otherwise (stops
    /// are not reported without WUNTRACED) the low 7 bits are the terminating signal.
    private static func decode(_ status: Int32) -> Termination {
        status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
    }
}
