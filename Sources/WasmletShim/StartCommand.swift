// `containerd-shim-wasmlet-v1 ... start`: find or create the ttrpc server for this task's group,
// print its address, exit 0. containerd waits for this process and reads its stdout, so the
// serving shim is forked off with stdout pointed elsewhere, and the parent exits at once.
//
// Who the task is comes from BootstrapParams on stdin (containerd 2.3+), answered with a
// BootstrapResult; otherwise from the flags and environment, answered with the address line.
//
// containerd reads stdout and stderr COMBINED (CombinedOutput) and dials whatever it got:
// on success, this process must write nothing but the answer, not even a debug line.

#if canImport(Glibc)
import Glibc
#endif

public enum StartCommand {
    public static func run(_ arguments: ShimArguments) -> Int32 {
        guard let bundle = FileIO.currentDirectory() else {
            return fail("cannot determine the bundle directory (getcwd: \(SystemError.last))")
        }
        // Anything else on stdin (runtime options from containerd 2.0-2.2) is not for us.
        let params = StandardInput.readToEnd().flatMap(BootstrapParams.decode).flatMap {
            $0.matches(id: arguments.id, namespace: arguments.namespace) ? $0 : nil
        }
        let id = params?.instanceID ?? arguments.id
        let namespace = firstNonEmpty(params?.namespace, arguments.namespace, ShimContext.environment("NAMESPACE"))
        let address = firstNonEmpty(params?.grpcAddress, arguments.address, ShimContext.environment("GRPC_ADDRESS"))
        let ttrpcAddress = firstNonEmpty(params?.ttrpcAddress, ShimContext.environment("TTRPC_ADDRESS"))
        let debug = arguments.debug || params?.debug == true
        guard !namespace.isEmpty else { return fail("-namespace is required") }
        guard !id.isEmpty else { return fail("-id is required") }
        let group = ShimSocketPath.group(bundle: bundle, id: id)
        let directory = ShimSocketPath.directory(configured: params?.socketDir)
        let path = ShimSocketPath.path(address: address, namespace: namespace, group: group, directory: directory)
        let answer = params == nil ? Array("unix://\(path)\n".utf8) : BootstrapResult.encode(address: "unix://" + path)

        if let error = FileIO.makeDirectories(directory, mode: 0o711) {
            return fail("cannot create the shim socket directory \(directory): \(error)")
        }
        if params?.socketDir?.isEmpty == false {
            ShimSocketPath.remember(directory: directory, bundle: bundle)
        }
        // containerd 1.6 and 1.7 find a running shim again after their own restart only through
        // the bundle's `address` file, which the shim writes (as runc's does); without it a
        // restarted containerd takes every task for dead and deletes it. containerd 2.x keeps
        // its own bootstrap.json, and reads this file only when that is missing.
        if let error = FileIO.writeFileAtomically(bundle + "/address", Array("unix://\(path)".utf8), mode: 0o644) {
            return fail("cannot write \(bundle)/address: \(error)")
        }
        // The group's shim may already be serving (pod grouping): reuse it.
        if probeExisting(path) {
            return announce(answer)
        }
        let listener: Int32
        switch UnixSocket.listen(path: path) {
        case .success(let fd):
            listener = fd
        case .failure(let error) where error.code == EADDRINUSE && probeExisting(path):
            // Another `start` of the same group won the race.
            return announce(answer)
        case .failure(let error):
            return fail("cannot listen on \(path): \(error)")
        }

        // A SIGTERM that reaches the server before it has installed its handler would end it
        // without removing its socket file (a race sigtermExitsCleanly caught once, under load):
        // the child starts with SIGTERM and SIGINT blocked, and the server unblocks them once
        // it handles them, so one that came early is delivered then.
        var termination = sigset_t()
        sigemptyset(&termination)
        sigaddset(&termination, SIGTERM)
        sigaddset(&termination, SIGINT)
        var previous = sigset_t()
        sigprocmask(SIG_BLOCK, &termination, &previous)
        let child = fork()
        if child != 0 { sigprocmask(SIG_SETMASK, &previous, nil) }
        if child < 0 {
            let error = SystemError.last
            close(listener)
            unlink(path)
            return fail("cannot fork the shim server: \(error)")
        }
        if child > 0 {
            close(listener)
            return announce(answer)
        }

        // The serving shim.
        detach(bundle: bundle, keeping: listener)
        let context = ShimContext(
            pid: getpid(), namespace: namespace, group: group,
            ttrpcAddress: ttrpcAddress,
            daemonSocketPath: ShimContext.daemonSocketFromEnvironment(), socketPath: path,
            log: ShimLog(debugEnabled: debug))
        let status = ShimServer(context: context, listener: listener).run()
        exit(status)
    }

    /// True when a live shim answers at `path`. A socket file nobody listens on is removed.
    static func probeExisting(_ path: String) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else { return false }
        switch UnixSocket.connect(path: path, timeoutMilliseconds: 1000) {
        case .success(let fd):
            close(fd)
            return true
        case .failure(let error):
            // EAGAIN after the retries: alive but its backlog is full. Anything else: stale.
            if error.code == EAGAIN { return true }
            unlink(path)
            return false
        }
    }

    private static func announce(_ answer: [UInt8]) -> Int32 {
        FileIO.writeAll(1, answer) ? 0 : 1
    }

    private static func firstNonEmpty(_ values: String?...) -> String {
        values.lazy.compactMap { $0 }.first { !$0.isEmpty } ?? ""
    }

    private static func fail(_ message: String) -> Int32 {
        FileIO.writeAll(2, "containerd-shim-wasmlet-v1 start: \(message)\n")
        return 1
    }

    /// Leaves containerd's process: new session, stdin/stdout on /dev/null (containerd reads
    /// stdout to EOF, so keeping its pipe would stall it), stderr on the bundle's `log` FIFO
    /// when containerd reads it, working directory / (the bundle may be removed under us).
    /// Every other inherited descriptor is closed: a pipe or socket the caller uses to notice
    /// that `start` exited must not be held open by the long-lived server.
    private static func detach(bundle: String, keeping listener: Int32) {
        _ = setsid()
        closeInheritedDescriptors(except: listener)
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        if null >= 0 {
            dup2(null, 0)
            dup2(null, 1)
        }
        // Non-blocking open fails (ENXIO) instead of waiting when nobody reads the FIFO.
        let logFIFO = open(bundle + "/log", O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        if logFIFO >= 0 {
            UnixSocket.setNonBlocking(logFIFO, false)
            dup2(logFIFO, 2)
            close(logFIFO)
        } else if null >= 0 {
            dup2(null, 2)
        }
        if null > 2 { close(null) }
        _ = chdir("/")
        signal(SIGPIPE, SIG_IGN)
    }

    /// Closes descriptors 3 and up, listed from /proc/self/fd (bounded by what is open, not by
    /// RLIMIT_NOFILE, which can be a million).
    private static func closeInheritedDescriptors(except keep: Int32) {
        guard let directory = opendir("/proc/self/fd") else { return }
        var open = [Int32]()
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let fd = Int32(name), fd > 2, fd != keep { open.append(fd) }
        }
        let own = dirfd(directory)
        closedir(directory)
        for fd in open where fd != own { close(fd) }
    }
}
