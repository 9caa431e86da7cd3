import Foundation
import Glibc
import Testing
import WasmletTestSupport

/// A ttrpc Version call in a few lines of Python (stdlib only), run as another user through
/// setpriv. Prints "status <code> <message>", or "connect-error <errno>".
let rawVersionClient = #"""
import socket, struct, sys
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out
def field(num, data): return varint(num << 3 | 2) + varint(len(data)) + data
def read_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]; i += 1; value |= (b & 0x7F) << shift; shift += 7
        if not b & 0x80: return value, i
def fields(buf):
    i, out = 0, {}
    while i < len(buf):
        key, i = read_varint(buf, i)
        if key & 7 == 0:
            v, i = read_varint(buf, i)
        else:
            n, i = read_varint(buf, i); v = buf[i:i+n]; i += n
        out[key >> 3] = v
    return out
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-error", e.errno); sys.exit(0)
req = field(1, b"wasmlet.v1.Runtime") + field(2, b"Version") + field(3, b"")
s.sendall(struct.pack(">IIBB", len(req), 1, 1, 0) + req)
def readn(n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk: print("closed"); sys.exit(0)
        data += chunk
    return data
length, stream, typ, flags = struct.unpack(">IIBB", readn(10))
resp = fields(readn(length))
status = fields(resp.get(1, b""))
print("status", status.get(1, 0), status.get(2, b"").decode())
"""#

/// A ttrpc Create in a few lines of Python (stdlib only): `create.py SOCKET ID MODULE [PREOPEN
/// [STDOUT]]` ("-" skips one). Prints "status <code> <message>", or "connect-error <errno>".
let rawCreateClient = rawVersionClient.replacingOccurrences(
    of: #"req = field(1, b"wasmlet.v1.Runtime") + field(2, b"Version") + field(3, b"")"#,
    with: #"""
    a = sys.argv + ["-", "-"]
    body = field(1, b"permissions") + field(2, a[2].encode()) + field(4, a[3].encode()) + field(6, b"guest")
    if a[4] != "-": body += field(8, field(1, b"/data") + field(2, a[4].encode()))
    if a[5] != "-": body += field(11, a[5].encode())
    req = field(1, b"wasmlet.v1.Runtime") + field(2, b"Create") + field(3, body)
    """#)

extension DaemonEndToEndTests {
    /// Who may call, checked with a real unprivileged user (nobody) through setpriv.
    @Suite struct Permissions {
        let python = "/usr/bin/python3"

        func runAsNobody(socket: String, script: String, groups: String?) async throws -> String {
            var arguments = ["--reuid=nobody", "--regid=nogroup"]
            arguments += groups.map { ["--groups=\($0)"] } ?? ["--clear-groups"]
            let result = try await ChildProcess.run("/usr/bin/setpriv", arguments + [python, script, socket])
            return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0 && access("/usr/bin/python3", X_OK) == 0))
        func unprivilegedUserIsRefusedUnlessInTheGroup() async throws {
            let directory = try TemporaryDirectory()
            let script = directory.path + "/client.py"
            try rawVersionClient.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o644)
            let users = try #require(getgrnam("users")?.pointee.gr_gid)
            let nogroup = try #require(getgrnam("nogroup")?.pointee.gr_gid)

            // Group "users": the socket is 0660 root:users.
            let daemon = try await DaemonProcess(directory: directory, arguments: ["--group", "users"])
            defer { daemon.killAndReap() }
            var info = stat()
            #expect(lstat(daemon.socketPath, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o660)
            #expect(info.st_uid == 0)
            #expect(info.st_gid == users)

            // nobody outside the group cannot even open the socket...
            let outsider = try await runAsNobody(socket: daemon.socketPath, script: script, groups: nil)
            #expect(outsider == "connect-error 13", "\(outsider)")
            // ...and with a loose socket mode (as a misconfigured socket unit could leave it),
            // the daemon's SO_PEERCRED check refuses the call: PERMISSION_DENIED (7).
            chmod(daemon.socketPath, 0o666)
            let refused = try await runAsNobody(socket: daemon.socketPath, script: script, groups: nil)
            #expect(refused.hasPrefix("status 7 "), "\(refused)")
            // A member through a supplementary group is served.
            let member = try await runAsNobody(socket: daemon.socketPath, script: script, groups: "\(users)")
            #expect(member.hasPrefix("status 0"), "\(member)")
            #expect(daemon.log.contains("refusing API connection"))
            await daemon.stop()

            // Group "nogroup": nobody's primary group is the configured one.
            let second = try TemporaryDirectory()
            let primary = try await DaemonProcess(directory: second, arguments: ["--group", "nogroup"])
            defer { primary.killAndReap() }
            #expect(lstat(primary.socketPath, &info) == 0 && info.st_gid == nogroup)
            let allowed = try await runAsNobody(socket: primary.socketPath, script: script, groups: nil)
            #expect(allowed.hasPrefix("status 0"), "\(allowed)")
        }

        /// A member of the socket's group may name only host files it could open itself: a
        /// module it can read is created, one it cannot read (or behind a directory it cannot
        /// enter, whether or not it exists: the answer is the same) is PERMISSION_DENIED, and so
        /// are a preopen it cannot enter and a stdout it cannot write. Root is not checked.
        @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0 && access("/usr/bin/python3", X_OK) == 0))
        func aMemberMayNameOnlyHostFilesItCouldOpenItself() async throws {
            let directory = try TemporaryDirectory()
            let script = directory.file("create.py")
            try rawCreateClient.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o644)
            let users = try #require(getgrnam("users")?.pointee.gr_gid)
            let hello = try Data(contentsOf: URL(fileURLWithPath: example("hello")))
            func place(_ path: String, mode: mode_t) throws {
                try hello.write(to: URL(fileURLWithPath: path))
                chmod(path, mode)
            }
            for (name, mode) in [("open", 0o755), ("secret", 0o700), ("writable", 0o777)] as [(String, mode_t)] {
                #expect(mkdir(directory.file(name), mode) == 0)
                chmod(directory.file(name), mode)
            }
            try place(directory.file("open/hello.wasm"), mode: 0o644)
            try place(directory.file("open/private.wasm"), mode: 0o600)
            try place(directory.file("secret/hello.wasm"), mode: 0o644)
            let daemon = try await DaemonProcess(directory: directory, arguments: ["--group", "users"])
            defer { daemon.killAndReap() }
            var serial = 0
            func create(_ module: String, preopen: String = "-", stdout: String = "-", asRoot: Bool = false) async throws -> String {
                serial += 1
                let arguments = [script, daemon.socketPath, "p\(serial)", module, preopen, stdout]
                if asRoot {
                    return try await ChildProcess.run(python, arguments).output.trimmingCharacters(in: .whitespacesAndNewlines)
                }
                let result = try await ChildProcess.run(
                    "/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--groups=\(users)", python] + arguments)
                return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let denied = "status 7 permission denied: uid 65534 may not"
            let allowed = try await create(directory.file("open/hello.wasm"), preopen: directory.file("writable"), stdout: directory.file("writable/out"))
            #expect(allowed.hasPrefix("status 0"), "\(allowed)")
            let hidden = try await create(directory.file("secret/hello.wasm"))
            #expect(hidden.hasPrefix("\(denied) read module \(directory.file("secret/hello.wasm"))"), "\(hidden)")
            let missing = try await create(directory.file("secret/nothing.wasm"))
            #expect(missing.hasPrefix("\(denied) read module \(directory.file("secret/nothing.wasm"))"), "the same answer for a file that is not there: \(missing)")
            let unreadable = try await create(directory.file("open/private.wasm"))
            #expect(unreadable.hasPrefix("\(denied) read module"), "\(unreadable)")
            let preopen = try await create(directory.file("open/hello.wasm"), preopen: directory.file("secret"))
            #expect(preopen.hasPrefix("\(denied) read and write preopen \(directory.file("secret"))"), "\(preopen)")
            let readOnlyTree = try await create(directory.file("open/hello.wasm"), preopen: directory.file("open"))
            #expect(readOnlyTree.hasPrefix("\(denied) read and write preopen"), "a writable preopen of a tree it cannot write: \(readOnlyTree)")
            let stdout = try await create(directory.file("open/hello.wasm"), stdout: directory.file("open/out"))
            #expect(stdout.hasPrefix("\(denied) write stdout"), "\(stdout)")
            // Root names what it likes.
            let root = try await create(directory.file("secret/hello.wasm"), preopen: directory.file("secret"), asRoot: true)
            #expect(root.hasPrefix("status 0"), "\(root)")
        }

        /// Socket activation with the unit's `SocketGroup=` and no `group` configured: the
        /// daemon allows the group the socket file has (it used to check only its own `group`
        /// setting, so members the socket's mode let in got PERMISSION_DENIED on every call).
        @Test(.enabled(if: getuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0 && access("/usr/bin/python3", X_OK) == 0
            && access("/usr/bin/systemd-socket-activate", X_OK) == 0))
        func aSocketActivatedSocketsGroupIsAllowed() async throws {
            let directory = try TemporaryDirectory()
            let script = directory.path + "/client.py"
            try rawVersionClient.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o644)
            let nogroup = try #require(getgrnam("nogroup")?.pointee.gr_gid)
            let path = directory.path + "/api.sock"
            let daemon = try await DaemonProcess(
                directory: directory, launcher: "/usr/bin/systemd-socket-activate",
                launcherArguments: ["-l", path, "--fdname=api"], waitForSocket: false)
            defer { daemon.killAndReap() }
            // What SocketGroup=nogroup and SocketMode=0660 make of it, before the first connection
            // starts the daemon.
            #expect(await eventually(timeout: .seconds(10), every: .milliseconds(20)) { FileManager.default.fileExists(atPath: path) })
            #expect(chown(path, 0, nogroup) == 0 && chmod(path, 0o660) == 0)
            chmod(directory.path, 0o755)
            let member = try await runAsNobody(socket: path, script: script, groups: nil)
            #expect(member.hasPrefix("status 0"), "\(member); log: \(daemon.log)")
            #expect(daemon.log.contains("allowing the socket-activated API socket's group"))
        }
    }
}
