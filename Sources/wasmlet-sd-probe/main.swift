// wasmlet-sd-probe: a test helper that exercises WasmletSystemd in a process of its own,
// where the test cannot go: as the child of `systemd-socket-activate` (inherited fds
// start at 3, which the test process already uses), or in a private mount namespace
// with its own /run/systemd/journal/socket. It prints what it found, one fact per line,
// for WasmletSystemdTests to check. Not installed; not part of the daemon.
//
//   wasmlet-sd-probe sockets [NAME=unix|ipv4|ipv6|internet ...]
//       SocketActivation.takeListeningSockets with those expectations, then:
//         count=<n>
//         socket fd=<fd> name=<name> family=<family> cloexec=<0|1>   (one per socket)
//         env LISTEN_PID=<value|-> LISTEN_FDS=<value|-> LISTEN_FDNAMES=<value|->
//       or `error <description>` and exit status 1.
//   wasmlet-sd-probe journal-roundtrip
//       Only in a mount namespace other than its parent's, with a private /run (refuses
//       otherwise; the test runs it under `unshare --mount`): binds
//       /run/systemd/journal/socket, sends one entry with JournalLogSink, and prints
//         sent=<0|1>
//         datagram=<hex of the datagram journald would have received>
#if os(Linux)
import Glibc
import WasmletSystemd

func fail(_ message: String) -> Never {
    print("error \(message)")
    exit(1)
}

func environmentValue(_ name: String) -> String {
    getenv(name).map { String(cString: $0) } ?? "-"
}

func parseFamily(_ text: Substring) -> SocketFamily? {
    switch text {
    case "unix": .unix
    case "ipv4": .ipv4
    case "ipv6": .ipv6
    case "internet": .internet
    default: nil
    }
}

func probeSockets(_ arguments: ArraySlice<String>) {
    var expected: [String: SocketFamily] = [:]
    for argument in arguments {
        let parts = argument.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let family = parseFamily(parts[1]) else {
            fail("bad expectation \(argument)")
        }
        expected[String(parts[0])] = family
    }
    let sockets: [ListeningSocket]
    do {
        sockets = try SocketActivation.takeListeningSockets(expectedFamilies: expected)
    } catch {
        fail(error.description)
    }
    print("count=\(sockets.count)")
    for socket in sockets {
        let cloexec = (fcntl(socket.fileDescriptor, F_GETFD) & FD_CLOEXEC) != 0 ? 1 : 0
        print("socket fd=\(socket.fileDescriptor) name=\(socket.name) family=\(socket.family) cloexec=\(cloexec)")
    }
    let names = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
    print("env " + names.map { "\($0)=\(environmentValue($0))" }.joined(separator: " "))
}

func namespaceLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 256)
    let length = readlink(path, &buffer, buffer.count - 1)
    guard length > 0 else { return nil }
    return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func probeJournalRoundtrip() {
    // Never bind a journal socket in the host's namespace, even where journald is absent:
    // require a mount namespace of our own, i.e. not the one of the process that started
    // us (`unshare --mount sh -c '... exec probe'` leaves the test process as our parent).
    // PID 1's namespace is not used for this: containers often deny reading it.
    guard let own = namespaceLink("/proc/self/ns/mnt"),
          let parent = namespaceLink("/proc/\(getppid())/ns/mnt"),
          own != parent
    else { fail("journal-roundtrip must run in a private mount namespace (unshare --mount)") }

    let directory = "/run/systemd/journal"
    let path = directory + "/socket"
    guard access(path, F_OK) != 0 else { fail("\(path) already exists") }
    _ = mkdir("/run/systemd", 0o755)
    _ = mkdir(directory, 0o755)

    let receiver = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard receiver >= 0 else { fail("socket: errno \(errno)") }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: Array(path.utf8) + [0])
    }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(receiver, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard bound == 0 else { fail("bind \(path): errno \(errno)") }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    _ = setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

    let sink = JournalLogSink(syslogIdentifier: "wasmlet-sd-probe")
    let sent = sink.send(
        message: "guest exited\nwith code 3",
        priority: .warning,
        fields: ["wasmlet_instance_id": "inst-42", "WASMLET_NAMESPACE": "k8s.io"]
    )
    print("sent=\(sent ? 1 : 0)")

    var buffer = [UInt8](repeating: 0, count: 65536)
    let received = recv(receiver, &buffer, buffer.count, 0)
    guard received >= 0 else { fail("recv: errno \(errno)") }
    let hex = buffer[0..<received].map { byte in
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }.joined()
    print("datagram=\(hex)")
    unlink(path)
}

let arguments = CommandLine.arguments
switch arguments.dropFirst().first {
case "sockets": probeSockets(arguments.dropFirst(2))
case "journal-roundtrip": probeJournalRoundtrip()
default: fail("usage: wasmlet-sd-probe sockets [NAME=FAMILY ...] | journal-roundtrip")
}
#else
print("error wasmlet-sd-probe needs Linux")
#endif
