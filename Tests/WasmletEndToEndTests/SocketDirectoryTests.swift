import Foundation
import Glibc
import Testing
import WasmletTestSupport

extension DaemonEndToEndTests {
    /// wasmletd on its defaults on a fresh machine serves /run/wasmlet/wasmlet.sock, whose
    /// directory nobody made yet (its systemd units make it; `wasmletd` started by hand, as the
    /// README's quick start does, does not): the daemon makes it, 0755, before its first socket.
    @Suite struct SocketDirectory {
        @Test func aMissingSocketDirectoryIsCreated() async throws {
            let directory = try TemporaryDirectory()
            let run = directory.path + "/run/wasmlet"
            let daemon = try await DaemonProcess(directory: directory, socketPath: run + "/wasmlet.sock")
            var info = stat()
            #expect(stat(run, &info) == 0 && info.st_mode & 0o777 == 0o755, "mode \(String(info.st_mode & 0o777, radix: 8))")
            #expect(access(run + "/wasmlet.sock.listeners", F_OK) == 0, "the listener handoff socket beside the API's")
            let client = try await daemon.client()
            #expect(try await !client.version().apiVersion.isEmpty)
            await client.close()
            await daemon.stop()
        }
    }
}
