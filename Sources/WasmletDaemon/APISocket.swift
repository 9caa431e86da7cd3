import Foundation
import Glibc
import Logging
import WasmletService
import WasmletSystemd
import WasmletTTRPC

/// Where the API is served: the socket systemd passed (socket activation, descriptor named
/// "api"), else a socket the daemon binds itself at the configured path.
enum APISocket {
    /// Inherited sockets must be taken before any other thread may fork/exec (the call unsets
    /// LISTEN_* and marks the descriptors close-on-exec), so the daemon calls this first.
    /// The descriptor named "metrics" (an internet socket) is for the metrics endpoint.
    static func takeActivated(logger: Logger) throws -> (api: CInt?, metrics: CInt?) {
        var sockets: [ListeningSocket]
        do {
            sockets = try SocketActivation.takeListeningSockets(expectedFamilies: ["api": .unix, "metrics": .internet])
        } catch {
            throw DaemonError.startup("socket activation: \(error)")
        }
        let metrics = sockets.first(where: { $0.name == "metrics" })
        sockets.removeAll { $0.name == "metrics" }
        return (try takeAPI(sockets, logger: logger), metrics?.fileDescriptor)
    }

    private static func takeAPI(_ sockets: [ListeningSocket], logger: Logger) throws -> CInt? {
        if let api = sockets.first(where: { $0.name == "api" }) {
            for other in sockets where other != api {
                logger.warning("ignoring inherited socket \(other)")
            }
            return api.fileDescriptor
        }
        if sockets.count == 1, sockets[0].family == .unix {
            logger.warning("inherited socket \(sockets[0]) is not named 'api'; serving the API on it anyway")
            return sockets[0].fileDescriptor
        }
        for socket in sockets { logger.warning("ignoring inherited socket \(socket)") }
        return nil
    }

    /// The group of the socket-activated API socket's file, when its socket unit gave it one
    /// (`SocketGroup=` with `SocketMode=0660`): that says its members are to use the API, so the
    /// daemon's peer check allows them too, as it does the configured `group`. nil for root's
    /// group, the daemon's own, or an abstract socket.
    static func groupOfActivatedSocket(_ fd: CInt) -> gid_t? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0, address.sun_family == sa_family_t(AF_UNIX) else { return nil }
        let path = withUnsafeBytes(of: address.sun_path) { raw -> String in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        var info = stat()
        guard !path.isEmpty, stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK,
            info.st_gid != 0, info.st_gid != getgid()
        else { return nil }
        return info.st_gid
    }

    static func serve(
        activated: CInt?, configuration: DaemonConfiguration, registry: TTRPCServiceRegistry,
        serverConfiguration: TTRPCServer.Configuration, logger: Logger
    ) async throws -> TTRPCServer {
        if let activated {
            let server = try await TTRPCServer.adopt(
                listeningSocket: activated, registry: registry, configuration: serverConfiguration)
            logger.info("serving the API on the socket-activated descriptor \(activated)")
            return server
        }
        let path = configuration.socketPath
        try makeParentDirectory(of: path)
        var serverConfiguration = serverConfiguration
        serverConfiguration.socketMode = 0o660
        // root:group when we are root; a non-root daemon keeps itself as owner (it may only hand
        // the file to a group it belongs to). Set before the socket appears at its path.
        serverConfiguration.socketGroup = configuration.group.flatMap { GroupLookup.gid(named: $0) }
        let server: TTRPCServer
        do {
            server = try await TTRPCServer.bind(unixSocketPath: path, registry: registry, configuration: serverConfiguration)
        } catch let error as TTRPCError {
            throw DaemonError.startup(error.message + (configuration.group.map { " (socket group \($0))" } ?? ""))
        }
        logger.info("serving the API on \(path)", metadata: ["group": "\(configuration.group ?? "-")"])
        return server
    }

    /// mkdir -p with 0755 for what it creates: others must be able to reach the socket, whose
    /// own mode is what guards it.
    static func makeParentDirectory(of path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        var components: [String] = []
        var current = parent
        while !current.isEmpty, current != "/", access(current, F_OK) != 0 {
            components.append(current)
            current = (current as NSString).deletingLastPathComponent
        }
        for directory in components.reversed() {
            if mkdir(directory, 0o755) != 0, errno != EEXIST {
                throw DaemonError.startup("cannot create \(directory): \(String(cString: strerror(errno)))")
            }
            chmod(directory, 0o755)
        }
    }
}
