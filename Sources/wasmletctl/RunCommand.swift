import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import WasmletAPI
import WasmletClient
import WasmletConventions

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a module on wasmletd, streaming its output, and exit with its exit code.",
        discussion: """
            The guest's stdout and stderr reach this command through two FIFOs in a private \
            temporary directory (mode 0700, under $TMPDIR or /tmp) whose paths are passed to the \
            daemon, which opens them itself. So the daemon must be able to open files of this \
            user's: that holds when it runs as root (the usual setup) or as the same user. \
            The guest's stdin is this command's stdin (as with `wasmtime run` and `ctr run`), \
            through a third FIFO, with end-of-file when the input ends; --no-stdin gives it \
            /dev/null. Ctrl-C or SIGTERM kills the instance (a second one sends KILL); one that \
            comes before the guest has started deletes it (with --no-rm, kills it) unstarted. MODULE is a .wasm path (made absolute before sending) or a "sha256:<hex>" \
            digest of a module in the daemon's cache. Everything after MODULE goes to the guest.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var guest: GuestOptions

    @Flag(inversion: .prefixedNo, help: "Delete the instance once it has exited.")
    var rm = true

    @Flag(inversion: .prefixedNo, help: "Pass this command's stdin to the guest (--no-stdin: the guest reads /dev/null).")
    var stdin = true

    @Argument(parsing: .captureForPassthrough, help: "Arguments passed to the guest.")
    var arguments: [String] = []

    func run() async throws {
        let currentDirectory = FileManager.default.currentDirectoryPath
        var request = Wasmlet_V1_CreateRequest()
        try parsed { () throws(ParseError) in
            try guest.fill(&request, idPrefix: "run-", currentDirectory: currentDirectory)
            request.args.append(contentsOf: arguments)
        }

        // An unopened fd 0 would be taken by the first descriptor opened below.
        if fcntl(STDIN_FILENO, F_GETFD) < 0 { _ = open("/dev/null", O_RDONLY) }
        let pipes: StdioFIFOs
        do {
            pipes = try StdioFIFOs()
        } catch {
            printError(error.message)
            throw ExitCode.failure
        }
        defer { pipes.remove() }
        request.stdout = pipes.stdoutPath
        request.stderr = pipes.stderrPath
        if stdin {
            request.stdin = pipes.stdinPath
            InputPump.start(source: STDIN_FILENO, fifo: pipes.stdinPath)
        }

        let key = (namespace: request.namespace, id: request.id)
        let rm = self.rm
        let exit = try await withDaemon(global) { client -> Wasmlet_V1_ExitRecord in
            // Installed before Create: from here on a signal cannot end wasmletctl and leave
            // the instance behind in the daemon.
            let forwarder = SignalForwarder(client: client, namespace: key.namespace, id: key.id)
            defer { forwarder.finish() }
            let created = try await client.create(request)
            for listener in created.listeners {
                printError("listening on \(listener.boundAddress) (guest fd \(listener.guestFd))")
            }
            let pumps = [
                OutputPump(source: pipes.stdoutRead, destination: STDOUT_FILENO),
                OutputPump(source: pipes.stderrRead, destination: STDERR_FILENO),
            ]
            pumps.forEach { $0.start() }
            func drain(grace: Duration) async {
                // Our own write ends kept the reads from seeing EOF before the daemon opened
                // the FIFOs; now the guest is done, drop them and drain what is left.
                pipes.closeWriters()
                for pump in pumps { await pump.finish(grace: grace) }
            }
            if let signal = forwarder.pendingSignal {
                // Interrupted before the guest started: it never runs. Deleted, or with
                // --no-rm killed, so that its record says so.
                if rm {
                    _ = try? await client.delete(namespace: key.namespace, id: key.id)
                } else {
                    _ = try? await client.kill(namespace: key.namespace, id: key.id, signal: UInt32(signal))
                }
                await drain(grace: .milliseconds(500))
                printError("\(key.namespace)/\(key.id) interrupted by signal \(signal) before it started; \(rm ? "deleted" : "killed")")
                throw ExitCode(128 + signal)
            }
            let exit: Wasmlet_V1_ExitRecord
            do {
                try await client.start(namespace: key.namespace, id: key.id)
                forwarder.running()
                exit = try await client.wait(namespace: key.namespace, id: key.id)
            } catch {
                await drain(grace: .milliseconds(500))
                if rm { _ = try? await client.delete(namespace: key.namespace, id: key.id) }
                throw error
            }
            forwarder.finish()
            await drain(grace: .seconds(2))
            if rm {
                do {
                    try await client.delete(namespace: key.namespace, id: key.id)
                } catch {
                    printError("warning: could not delete \(key.namespace)/\(key.id): \(error)")
                }
            }
            return exit
        }
        if let summary = InstanceFormatting.exitSummary(exit) {
            printError("\(key.namespace)/\(key.id) \(summary)")
        }
        throw ExitCode(exit.code)
    }
}

