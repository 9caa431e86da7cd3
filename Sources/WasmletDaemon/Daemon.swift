import Foundation
import Glibc
import Logging
import NIOCore
import NIOPosix
import WasmletContainerd
import WasmletFDHandoff
import WasmletHTTPTrigger
import WasmletMetrics
import WasmletRuntime
import WasmletService
import WasmletStore
import WasmletSystemd
import WasmletTTRPC

/// `wasmletd` from start to exit. The order matters and is the contract with systemd and with
/// clients:
/// 1. configuration (flags over file over defaults); a bad one stops here, naming the problem;
/// 2. signal handling, before anything can take long (a SIGHUP must not kill a starting daemon);
/// 3. inherited sockets (must be taken before other threads could fork);
/// 4. the metrics/health endpoint (activated "metrics" descriptor, or bound), so that during a
///    long recovery `/readyz` answers 503 "recovering state" rather than refusing connections;
/// 5. recovery of the durable records (instances that were running are now daemon_restarted);
/// 6. the runtime, then the API socket (activated, or bound 0660 root:group);
/// 7. READY=1 — only now: the socket listens and the state is recovered; `/readyz` turns 200;
/// 8. STATUS= updates and the watchdog;
/// 9. signals until SIGTERM/SIGINT, then the drain (`ShutdownDrain`), exit 0.
public struct Daemon {
    let options: DaemonOptions

    public init(options: DaemonOptions) {
        self.options = options
    }

    /// Runs the daemon; returns the process exit status.
    public func run() async -> Int32 {
        let configuration: DaemonConfiguration
        do {
            configuration = try DaemonConfiguration.resolve(options: options, parserChild: ConfigurationParserChild())
        } catch {
            FileHandle.standardError.write(Data("wasmletd: \(error)\n".utf8))
            return 2
        }
        let levelBox = DaemonLogging.bootstrap(level: configuration.logLevel)
        let logger = Logger(label: "wasmletd")
        do {
            return try await serve(configuration, levelBox: levelBox, logger: logger)
        } catch {
            logger.critical("wasmletd cannot start: \(error)")
            return 1
        }
    }

    private func serve(_ initial: DaemonConfiguration, levelBox: LogLevelBox, logger: Logger) async throws -> Int32 {
        let signals = SignalEvents()
        let activatedSockets = try APISocket.takeActivated(logger: logger)
        let daemonMetrics = DaemonMetrics(settings: initial.metricsSettings)
        let readiness = DaemonReadiness()
        // Before recovery: /metrics (without the runtime's numbers yet), /healthz 200 and
        // /readyz 503 "recovering state" while the records are read.
        let metricsServer = try await MetricsEndpoint.serve(
            activated: activatedSockets.metrics, address: initial.metricsAddress,
            endpoints: MetricsServer.Endpoints(
                metrics: { daemonMetrics.metrics.scrape() },
                healthy: { readiness.isHealthy },
                notReadyReason: { readiness.notReadyReason }),
            logger: logger)
        do {
            return try await recoverAndServe(
                initial, signals: signals, activatedAPI: activatedSockets.api, daemonMetrics: daemonMetrics,
                readiness: readiness, metricsServer: metricsServer, levelBox: levelBox, logger: logger)
        } catch {
            await metricsServer.shutdown()
            throw error
        }
    }

    /// Steps 5 to 9, with the metrics endpoint already up.
    private func recoverAndServe(
        _ initial: DaemonConfiguration, signals: SignalEvents, activatedAPI activated: CInt?, daemonMetrics: DaemonMetrics,
        readiness: DaemonReadiness, metricsServer: MetricsHandle, levelBox: LogLevelBox, logger: Logger
    ) async throws -> Int32 {
        var configuration = initial
        let notifier = SystemdNotifier()
        try await TestHooks.holdRecovery(logger: logger)

        let store: InstanceStore
        let recovery: InstanceStore.Recovery
        do {
            store = try InstanceStore(stateDirectory: configuration.stateDirectory)
            recovery = try store.recover()
        } catch {
            throw DaemonError.startup("state directory \(configuration.stateDirectory): \(error)")
        }
        for (path, reason) in recovery.unreadable {
            logger.error("unreadable instance record set aside as \(path).corrupt", metadata: ["error": "\(reason)"])
        }
        for record in recovery.markedExited {
            logger.notice(
                "instance exited",
                metadata: [
                    "namespace": "\(record.namespace)", "id": "\(record.id)", "code": "137",
                    "reason": "\(ExitReason.daemonRestarted.rawValue)", "message": "was created or running when the previous daemon died",
                ])
        }
        daemonMetrics.recoveredExits(recovery.markedExited.count)
        let directory = InstanceDirectory()
        directory.addRecovered(recovery.instances)
        daemonMetrics.attach(recovered: directory)
        readiness.set(.starting)
        logger.info(
            "state recovered",
            metadata: [
                "state_dir": "\(configuration.stateDirectory)", "records": "\(recovery.instances.count)",
                "marked_exited": "\(recovery.markedExited.count)",
            ])

        let recorder = RuntimeEventRecorder(store: store, directory: directory, logger: logger)
        // Services' HTTP, on event loops of its own: a slow guest answer never delays the API.
        let httpGroup = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount))
        let httpTrigger = HTTPTriggerHost(
            group: httpGroup, serverSoftware: "wasmlet/\(DaemonVersion.version)", logger: logger, observer: daemonMetrics,
            pollWindow: .nanoseconds(Int64(configuration.httpPoll / .nanoseconds(1))))
        let runtimeConfiguration = Self.runtimeConfiguration(configuration.runtimeConfiguration)
        Self.logInstanceCeiling(runtimeConfiguration, logger: logger)
        let runtime = try WasmletRuntime(
            configuration: runtimeConfiguration,
            eventHandler: { recorder.handle($0); daemonMetrics.handle($0) }, hooks: daemonMetrics.runtimeHooks,
            servingHost: httpTrigger)
        daemonMetrics.attach(runtime)
        daemonMetrics.attach(httpTrigger)
        // One instance service under both APIs: wasmlet.v1 and containerd's task service.
        let instances = InstanceService(
            runtime: runtime, store: store, directory: directory, logger: logger, observer: daemonMetrics)
        let service = RuntimeService(instances: instances, logger: logger, observer: daemonMetrics)
        let probe = ProgressProbe(runtime: runtime)
        readiness.attach(probe)

        var registry = TTRPCServiceRegistry()
        service.register(in: &registry)
        // containerd's task service for containerd-shim-wasmlet-v1, on the same socket.
        let eventPublisher = TaskEventPublisher(logger: logger)
        // Listening sockets shims create in pods' network namespaces and hand over (SCM_RIGHTS)
        // on a socket beside the API's, for their containers' Creates to claim.
        let handoffTable = ListenerHandoffTable(lifetime: TestHooks.handoffLifetime ?? .seconds(60))
        let handoffPath = ListenerHandoffMessage.socketPath(forAPISocket: configuration.socketPath)
        let taskService = ContainerdTaskService(
            instances: instances, publisher: eventPublisher, logger: logger, observer: daemonMetrics, handoffs: handoffTable,
            handoffSocket: handoffPath)
        taskService.register(in: &registry)
        await taskService.pruneOrphanedTasks()
        var socketGroup = configuration.group.flatMap { GroupLookup.gid(named: $0) }
        if socketGroup == nil, let activated, let group = APISocket.groupOfActivatedSocket(activated) {
            // systemd made the socket with a group (its unit's SocketGroup=) and no `group` is
            // configured: the socket's mode lets that group in, so the peer check does too.
            socketGroup = group
            logger.info("allowing the socket-activated API socket's group", metadata: ["gid": "\(group)"])
        }
        let authorizer = PeerAuthorizer(daemonUID: getuid(), groupID: socketGroup)
        let protocolLogger = logger
        var serverConfiguration = TTRPCServer.Configuration(
            authorizer: { peer in
                let allowed = authorizer.allows(peer)
                if !allowed { protocolLogger.notice("refusing API connection", metadata: ["peer": "\(peer)"]) }
                return allowed
            },
            onProtocolError: { peer, error in
                protocolLogger.warning(
                    "closed a connection after a protocol error", metadata: ["peer": "\(peer.map(String.init(describing:)) ?? "?")", "error": "\(error)"])
            })
        serverConfiguration.onAcceptError = { error in
            protocolLogger.warning("cannot accept an API connection; retrying in 1 s", metadata: ["error": "\(error)"])
        }
        // Before the API socket: a shim that reached the API can always hand off listeners. It
        // lives beside the API socket, whose directory may not exist yet (/run/wasmlet on a
        // fresh machine, started by hand rather than by its systemd units).
        try APISocket.makeParentDirectory(of: handoffPath)
        let handoffServer = try ListenerHandoffServer(
            path: handoffPath, table: handoffTable, group: socketGroup,
            authorize: { authorizer.allows($0) }, logger: logger)
        logger.info("taking listener handoffs on \(handoffPath)")
        let server = try await APISocket.serve(
            activated: activated, configuration: configuration, registry: registry,
            serverConfiguration: serverConfiguration, logger: logger)

        notifier.ready(status: StatusReporter.text(instances.counts()))
        readiness.set(.ready)
        logger.info("wasmletd ready", metadata: ["version": "\(DaemonVersion.version)", "pid": "\(getpid())"])

        var watchdog: Watchdog?
        var healthTicker: HealthTicker?
        do {
            if let watchdogConfiguration = try WatchdogConfiguration.fromEnvironment() {
                watchdog = Watchdog(configuration: watchdogConfiguration, notifier: notifier) { probe.isMakingProgress() }
                watchdog?.start()
                logger.info("systemd watchdog on: \(watchdogConfiguration)")
            }
        } catch {
            logger.error("systemd watchdog off: \(error)")
        }
        if watchdog == nil {
            // No watchdog to tick the probe: tick it for /healthz alone.
            healthTicker = HealthTicker(interval: .seconds(1)) { _ = probe.isMakingProgress() }
        }

        let firstInterval = configuration.statusInterval
        var statusTask = Task { await StatusReporter.run(instances: instances, notifier: notifier, interval: firstInterval) }

        for await number in signals.stream {
            if number == SIGHUP {
                notifier.reloading()
                configuration = reload(configuration, levelBox: levelBox, logger: logger)
                statusTask.cancel()
                let interval = configuration.statusInterval
                statusTask = Task { await StatusReporter.run(instances: instances, notifier: notifier, interval: interval) }
                notifier.ready(status: StatusReporter.text(instances.counts()))
                continue
            }
            logger.notice("received \(number == SIGTERM ? "SIGTERM" : "SIGINT"); draining")
            break
        }

        statusTask.cancel()
        readiness.set(.draining)
        await ShutdownDrain(
            runtime: runtime, instances: instances, store: store, server: server, notifier: notifier, logger: logger
        ).run(grace: configuration.shutdownGrace)
        handoffServer.stop()
        // Deliver the exits of the guests the drain ended before the process goes.
        await eventPublisher.finish()
        watchdog?.stop()
        healthTicker?.stop()
        await metricsServer.shutdown()
        try? await httpGroup.shutdownGracefully()
        logger.notice("wasmletd stopped")
        return 0
    }

    /// SIGHUP: re-read the file and re-apply the same flags. The log level, the status interval
    /// and the shutdown grace change at once. Everything else is fixed for the process's life
    /// (the sockets are bound and the runtime takes its limits at start): a change there is
    /// logged by name as needing a restart, never silently dropped. A broken file keeps the old
    /// settings.
    private func reload(_ current: DaemonConfiguration, levelBox: LogLevelBox, logger: Logger) -> DaemonConfiguration {
        let next: DaemonConfiguration
        do {
            next = try DaemonConfiguration.resolve(options: options, parserChild: ConfigurationParserChild())
        } catch {
            logger.error("reload failed, keeping the running configuration: \(error)")
            return current
        }
        var applied = current
        applied.logLevel = next.logLevel
        applied.shutdownGrace = next.shutdownGrace
        applied.statusInterval = next.statusInterval
        levelBox.value = next.logLevel
        let ignored = current.settingsNeedingRestart(toApply: next)
        if !ignored.isEmpty {
            logger.warning(
                "reload ignored changed settings, which take effect after a restart: \(ignored.joined(separator: ", "))")
        }
        logger.notice(
            "configuration reloaded",
            metadata: ["log_level": "\(next.logLevel)", "shutdown_grace": "\(next.shutdownGrace)"])
        return applied
    }

    /// The kernel's ceiling on live guests, at start-up: the operator sees it before any create
    /// is refused by it, and is warned when limits.max_instances asks for more.
    static func logInstanceCeiling(_ configuration: RuntimeConfiguration, logger: Logger) {
        guard let ceiling = configuration.instanceCeiling else {
            logger.info("instance ceiling unknown (no kernel limits readable)", metadata: ["max_instances": "\(configuration.maxInstances)"])
            return
        }
        let metadata: Logger.Metadata = [
            "ceiling": "\(ceiling.instances)", "limit": "\(ceiling.limit)", "max_instances": "\(configuration.maxInstances)",
        ]
        if ceiling.instances < configuration.maxInstances {
            logger.warning(
                "limits.max_instances is above what this node can hold: creates past \(ceiling.instances) live instances are refused (\(ceiling.limit))",
                metadata: metadata)
        } else {
            logger.info("instance ceiling", metadata: metadata)
        }
    }

    static func runtimeConfiguration(_ settings: RuntimeSettings) -> RuntimeConfiguration {
        var configuration = RuntimeConfiguration()
        if let value = settings.maxInstances { configuration.maxInstances = value }
        if let value = settings.memoryBudgetBytes { configuration.memoryBudgetBytes = value }
        if let value = settings.memoryAdmission { configuration.memoryAdmission = value }
        if let value = settings.defaultMemoryCapBytes { configuration.defaultMemoryCapBytes = value }
        return configuration
    }
}

/// Knobs for tests only, read from the environment. Never set them in production.
enum TestHooks {
    /// Test-only: `WASMLET_TEST_RECOVERY_GATE=<path>` holds the daemon before it recovers its
    /// state until `<path>` exists, so a test can observe what clients and probes see during a
    /// long recovery (e.g. `/readyz` answering 503 "recovering state") without depending on how
    /// fast recovery is.
    static let recoveryGateVariable = "WASMLET_TEST_RECOVERY_GATE"

    /// Test-only: `WASMLET_TEST_HANDOFF_LIFETIME_MS=<n>` keeps unclaimed handed-off listeners
    /// n ms instead of 60 s, so a test can see them closed.
    static var handoffLifetime: Duration? {
        guard let value = getenv("WASMLET_TEST_HANDOFF_LIFETIME_MS"), let ms = Int(String(cString: value)), ms > 0 else { return nil }
        return .milliseconds(ms)
    }

    static func holdRecovery(logger: Logger) async throws {
        guard let value = getenv(recoveryGateVariable), value.pointee != 0 else { return }
        let path = String(cString: value)
        logger.warning("test hook \(recoveryGateVariable): holding recovery until \(path) exists")
        while access(path, F_OK) != 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        logger.warning("test hook \(recoveryGateVariable): \(path) exists; recovering")
    }
}
