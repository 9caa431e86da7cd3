import Foundation
import Glibc
import Logging
import WasmletMetrics
import WasmletRuntime
import WasmletSystemd
import WasmletTTRPC

/// `wasmletd` from start to exit. The order matters and is the contract with systemd and with
/// clients:
/// 1. configuration (flags over file over defaults); a bad one stops here, naming the problem;
/// 2. signal handling, before anything can take long (a SIGHUP must not kill a starting daemon);
/// 3. inherited sockets (must be taken before other threads could fork);
/// 4. recovery of the durable records (instances that were running are now daemon_restarted);
/// 5. the runtime, then the API socket (activated, or bound 0660 root:group);
/// 6. READY=1 — only now: the socket listens and the state is recovered;
/// 7. STATUS= updates and the watchdog;
/// 8. signals until SIGTERM/SIGINT, then the drain (`ShutdownDrain`), exit 0.
public struct Daemon {
    let options: DaemonOptions

    public init(options: DaemonOptions) {
        self.options = options
    }

    /// Runs the daemon; returns the process exit status.
    public func run() async -> Int32 {
        let configuration: DaemonConfiguration
        do {
            configuration = try DaemonConfiguration.resolve(options: options)
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
        var configuration = initial
        let signals = SignalEvents()
        let notifier = SystemdNotifier()
        let activatedSockets = try APISocket.takeActivated(logger: logger)
        let activated = activatedSockets.api
        let daemonMetrics = DaemonMetrics(settings: configuration.metricsSettings)

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
        logger.info(
            "state recovered",
            metadata: [
                "state_dir": "\(configuration.stateDirectory)", "records": "\(recovery.instances.count)",
                "marked_exited": "\(recovery.markedExited.count)",
            ])

        let recorder = RuntimeEventRecorder(store: store, directory: directory, logger: logger)
        let runtime = try WasmletRuntime(
            configuration: Self.runtimeConfiguration(configuration.runtimeConfiguration),
            eventHandler: { recorder.handle($0); daemonMetrics.handle($0) }, hooks: daemonMetrics.runtimeHooks)
        daemonMetrics.attach(runtime)
        let service = RuntimeService(
            runtime: runtime, store: store, directory: directory, logger: logger, observer: daemonMetrics)
        let probe = ProgressProbe(runtime: runtime)
        let metricsServer = try await MetricsEndpoint.serve(
            activated: activatedSockets.metrics, address: configuration.metricsAddress,
            endpoints: MetricsServer.Endpoints(
                metrics: { daemonMetrics.metrics.scrape() },
                healthy: { probe.isHealthy },
                ready: { daemonMetrics.isAccepting && !service.isDraining }),
            logger: logger)

        var registry = TTRPCServiceRegistry()
        service.register(in: &registry)
        // containerd's task service for containerd-shim-wasmlet-v1, on the same socket.
        let eventPublisher = TaskEventPublisher(logger: logger)
        let taskService = ContainerdTaskService(service: service, publisher: eventPublisher, logger: logger)
        taskService.register(in: &registry)
        await taskService.pruneOrphanedTasks()
        let authorizer = PeerAuthorizer(
            daemonUID: getuid(), groupID: configuration.group.flatMap { GroupLookup.gid(named: $0) })
        let protocolLogger = logger
        let serverConfiguration = TTRPCServer.Configuration(
            authorizer: { peer in
                let allowed = authorizer.allows(peer)
                if !allowed { protocolLogger.notice("refusing API connection", metadata: ["peer": "\(peer)"]) }
                return allowed
            },
            onProtocolError: { peer, error in
                protocolLogger.warning(
                    "closed a connection after a protocol error", metadata: ["peer": "\(peer.map(String.init(describing:)) ?? "?")", "error": "\(error)"])
            })
        let server = try await APISocket.serve(
            activated: activated, configuration: configuration, registry: registry,
            serverConfiguration: serverConfiguration, logger: logger)

        notifier.ready(status: StatusReporter.text(service.counts()))
        daemonMetrics.setAccepting(true)
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
        var statusTask = Task { await StatusReporter.run(service: service, notifier: notifier, interval: firstInterval) }

        for await number in signals.stream {
            if number == SIGHUP {
                notifier.reloading()
                configuration = reload(configuration, levelBox: levelBox, logger: logger)
                statusTask.cancel()
                let interval = configuration.statusInterval
                statusTask = Task { await StatusReporter.run(service: service, notifier: notifier, interval: interval) }
                notifier.ready(status: StatusReporter.text(service.counts()))
                continue
            }
            logger.notice("received \(number == SIGTERM ? "SIGTERM" : "SIGINT"); draining")
            break
        }

        statusTask.cancel()
        await ShutdownDrain(
            runtime: runtime, service: service, store: store, server: server, notifier: notifier, logger: logger
        ).run(grace: configuration.shutdownGrace)
        // Deliver the exits of the guests the drain ended before the process goes.
        await eventPublisher.finish()
        watchdog?.stop()
        healthTicker?.stop()
        await metricsServer.shutdown()
        logger.notice("wasmletd stopped")
        return 0
    }

    /// SIGHUP: re-read the file and re-apply the same flags. The log level, the status interval
    /// and the shutdown grace change at once; the socket, the state directory, the group and the
    /// runtime limits are fixed for the process's life (the runtime takes its limits at start),
    /// so a change there is logged as needing a restart. A broken file keeps the old settings.
    private func reload(_ current: DaemonConfiguration, levelBox: LogLevelBox, logger: Logger) -> DaemonConfiguration {
        let next: DaemonConfiguration
        do {
            next = try DaemonConfiguration.resolve(options: options)
        } catch {
            logger.error("reload failed, keeping the running configuration: \(error)")
            return current
        }
        var applied = current
        applied.logLevel = next.logLevel
        applied.shutdownGrace = next.shutdownGrace
        applied.statusInterval = next.statusInterval
        applied.metricsAddress = next.metricsAddress
        levelBox.value = next.logLevel
        var needsRestart: [String] = []
        if next.socketPath != current.socketPath { needsRestart.append("socket") }
        if next.stateDirectory != current.stateDirectory { needsRestart.append("state_dir") }
        if next.group != current.group { needsRestart.append("group") }
        if next.runtimeConfiguration != current.runtimeConfiguration { needsRestart.append("limits") }
        if next.metricsSettings != current.metricsSettings { needsRestart.append("metrics") }
        if !needsRestart.isEmpty {
            logger.warning("changed settings take effect after a restart: \(needsRestart.joined(separator: ", "))")
        }
        logger.notice(
            "configuration reloaded",
            metadata: ["log_level": "\(next.logLevel)", "shutdown_grace": "\(next.shutdownGrace)"])
        return applied
    }

    static func runtimeConfiguration(_ settings: RuntimeSettings) -> RuntimeConfiguration {
        var configuration = RuntimeConfiguration()
        if let value = settings.maxInstances { configuration.maxInstances = value }
        if let value = settings.memoryBudgetBytes { configuration.memoryBudgetBytes = value }
        if let value = settings.defaultMemoryCapBytes { configuration.defaultMemoryCapBytes = value }
        return configuration
    }
}
