// Publishes `/tasks/exit` to containerd when the shim itself has to declare tasks dead (wasmletd
// went away). Normally the daemon publishes every event; this is the fallback that keeps
// containerd (and kubelet) from waiting forever on a task nobody will report.
//
//     Events.Forward(ForwardRequest{envelope = 1 Envelope{timestamp = 1, namespace = 2,
//                    topic = 3, event = 4 Any{type_url = 1, value = 2}}})
//     TaskExit{container_id = 1, id = 2, pid = 3, exit_status = 4, exited_at = 5}

import Synchronization
import WasmletConventions

#if canImport(Glibc)
import Glibc
#endif

public struct ExitEvent: Sendable, Equatable {
    public var containerID: String
    public var pid: UInt32
    public var exit: TaskExit

    public init(containerID: String, pid: UInt32, exit: TaskExit) {
        self.containerID = containerID
        self.pid = pid
        self.exit = exit
    }
}

public enum EventPublisher {
    public static let service = "containerd.services.events.ttrpc.v1.Events"
    public static let method = "Forward"
    public static let exitTopic = "/tasks/exit"
    /// containerd's typeurl uses the bare message name, without "type.googleapis.com/".
    public static let exitTypeURL = "containerd.events.TaskExit"

    /// TaskExit: `id` is the process id within the container, which for the init process is
    /// the container id itself.
    public static func encodeTaskExit(_ event: ExitEvent) -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, event.containerID)
        writer.string(2, event.containerID)
        writer.uint32(3, event.pid)
        writer.uint32(4, event.exit.status)
        writer.message(5, event.exit.exitedAt.encoded())
        return writer.bytes
    }

    /// The ForwardRequest payload for one exit.
    public static func encodeForward(_ event: ExitEvent, namespace: String, timestamp: Timestamp = .now()) -> [UInt8] {
        var writer = ProtoWriter()
        writer.message(1) { envelope in
            envelope.message(1, timestamp.encoded())
            envelope.string(2, namespace)
            envelope.string(3, exitTopic)
            envelope.message(4) { any in
                any.string(1, exitTypeURL)
                any.data(2, encodeTaskExit(event))
            }
        }
        return writer.bytes
    }

    /// The full ttrpc request, with containerd's namespace metadata.
    public static func forwardRequest(_ event: ExitEvent, namespace: String) -> TTRPCRequest {
        TTRPCRequest(
            service: service, method: method, payload: encodeForward(event, namespace: namespace),
            metadata: [MetadataEntry(ShimMetadataKey.containerdNamespace, namespace)])
    }

    /// Sends all events on one connection to containerd's ttrpc address and waits up to
    /// `timeoutMilliseconds` for the answers (which are ignored beyond logging). Returns an error
    /// description on failure.
    public static func publish(
        _ events: [ExitEvent], namespace: String, ttrpcAddress: String, timeoutMilliseconds: Int64 = 1000
    ) -> String? {
        guard !events.isEmpty else { return nil }
        guard !ttrpcAddress.isEmpty else { return "TTRPC_ADDRESS is not set; cannot publish \(exitTopic)" }
        let requests = events.map { forwardRequest($0, namespace: namespace) }
        let path = UnixSocket.path(fromAddress: ttrpcAddress)
        switch OneShotClient.call(path: path, requests: requests, timeoutMilliseconds: timeoutMilliseconds) {
        case .failure(let failure):
            return "publishing \(exitTopic): \(failure)"
        case .success(let responses):
            let refused = responses.filter { !$0.isOK }
            guard let first = refused.first else { return nil }
            return "publishing \(exitTopic): containerd answered code \(first.code): \(first.message)"
        }
    }
}

/// Exit publications on threads of their own. The shim publishes only when wasmletd is lost, and
/// then containerd may be slow to answer, or gone too; on the shim's loop, each publication held
/// every other connection for up to its timeout. Here the loop only starts one and goes on
/// answering containerd. Used by the loop's thread only.
public final class BackgroundPublications {
    /// How long one publication waits for containerd's answers before giving up (and logging it).
    public static let timeoutMilliseconds: Int64 = 5000

    private final class Publication {
        let events: [ExitEvent]
        let namespace: String
        let ttrpcAddress: String
        let log: ShimLog
        let finished = Atomic<Bool>(false)
        var thread = pthread_t()

        init(events: [ExitEvent], namespace: String, ttrpcAddress: String, log: ShimLog) {
            self.events = events
            self.namespace = namespace
            self.ttrpcAddress = ttrpcAddress
            self.log = log
        }

        func run() {
            if let error = EventPublisher.publish(
                events, namespace: namespace, ttrpcAddress: ttrpcAddress,
                timeoutMilliseconds: BackgroundPublications.timeoutMilliseconds)
            {
                log.error(error)
            } else {
                log.debug("published /tasks/exit for \(events.map { "\($0.containerID) (\($0.exit.status))" }.joined(separator: ", "))")
            }
            finished.store(true, ordering: .releasing)
        }
    }

    private var running: [Publication] = []

    public init() {}

    /// Starts publishing `events`; publishes on the calling thread if no thread can be had.
    public func start(_ events: [ExitEvent], namespace: String, ttrpcAddress: String, log: ShimLog) {
        reapFinished()
        let publication = Publication(events: events, namespace: namespace, ttrpcAddress: ttrpcAddress, log: log)
        let context = Unmanaged.passRetained(publication).toOpaque()
        let created = pthread_create(&publication.thread, nil, { raw in
            Unmanaged<Publication>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<Publication>.fromOpaque(context).release()
            log.error("cannot start a thread to publish /tasks/exit (\(SystemError(created))); publishing on the loop")
            publication.run()
            return
        }
        running.append(publication)
    }

    /// Waits for every publication (each ends by its own timeout): before the shim exits, so
    /// that an exit it declared is not lost with the process.
    public func waitForAll() {
        for publication in running { pthread_join(publication.thread, nil) }
        running.removeAll()
    }

    private func reapFinished() {
        running.removeAll { publication in
            guard publication.finished.load(ordering: .acquiring) else { return false }
            pthread_join(publication.thread, nil)
            return true
        }
    }
}
