import Foundation
import Logging
import SwiftProtobuf
import WasmletAPI
import WasmletTTRPC

/// Publishes task events to containerd (`Forward` on its ttrpc socket), strictly in the order
/// they were handed over: one consumer drains one queue, so /tasks/exit can never overtake
/// /tasks/start. `publish` only enqueues, so no task call waits on containerd.
///
/// containerd learns that a CRI container stopped only from /tasks/exit, so a failed delivery
/// is retried (containerd may be restarting) before it is logged and dropped.
package final class TaskEventPublisher: Sendable {
    struct Event: Sendable {
        var address: String
        var namespace: String
        var topic: String
        var payload: Google_Protobuf_Any
        var timestamp: Date
    }

    private let continuation: AsyncStream<Event>.Continuation
    private let consumer: Task<Void, Never>

    package init(logger: Logger, retryDelays: [Duration] = [.milliseconds(100), .milliseconds(500), .seconds(2)]) {
        let (stream, continuation) = AsyncStream<Event>.makeStream()
        self.continuation = continuation
        consumer = Task {
            var clients: [String: TTRPCClient] = [:]
            for await event in stream {
                var attempt = 0
                while true {
                    do {
                        let client: TTRPCClient
                        if let cached = clients[event.address], cached.isConnected {
                            client = cached
                        } else {
                            client = try await TTRPCClient.connect(unixSocketPath: event.address)
                            clients[event.address] = client
                        }
                        try await Self.send(event, with: client)
                        logger.debug("event published", metadata: ["topic": "\(event.topic)", "namespace": "\(event.namespace)"])
                        break
                    } catch {
                        clients[event.address] = nil
                        guard attempt < retryDelays.count else {
                            logger.error(
                                "cannot publish a task event to containerd; dropped",
                                metadata: ["topic": "\(event.topic)", "address": "\(event.address)", "error": "\(error)"])
                            break
                        }
                        try? await Task.sleep(for: retryDelays[attempt])
                        attempt += 1
                    }
                }
            }
            for client in clients.values { await client.close() }
        }
    }

    /// Queues `event` for containerd at `address`. An empty address (a caller that is not a
    /// shim, e.g. a test) publishes nothing.
    func publish(address: String, namespace: String, topic: String, event: some SwiftProtobuf.Message) {
        guard !address.isEmpty, let payload = try? Google_Protobuf_Any(containerdPacking: event) else { return }
        continuation.yield(Event(address: address, namespace: namespace, topic: topic, payload: payload, timestamp: Date()))
    }

    /// Stops taking events and waits until those queued are delivered (or given up on).
    package func finish() async {
        continuation.finish()
        await consumer.value
    }

    private static func send(_ event: Event, with client: TTRPCClient) async throws {
        var envelope = Containerd_Services_Events_Ttrpc_V1_Envelope()
        envelope.timestamp = Google_Protobuf_Timestamp(date: event.timestamp)
        envelope.namespace = event.namespace
        envelope.topic = event.topic
        envelope.event = event.payload
        var request = Containerd_Services_Events_Ttrpc_V1_ForwardRequest()
        request.envelope = envelope
        let method = ContainerdEventsAPI.forward
        _ = try await client.call(
            service: method.service, method: method.method, request: request, responseType: method.responseType,
            timeout: .seconds(5), metadata: [TTRPCMetadata.containerdNamespaceKey: event.namespace])
    }
}
