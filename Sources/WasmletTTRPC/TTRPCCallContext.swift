/// What a server handler knows about the call it is serving. Built by the connection handler on
/// the event loop when the request frame arrives, then passed to the handler's task.
public struct TTRPCCallContext: Sendable {
    /// Fully qualified service name from the request, e.g. "containerd.task.v2.Task".
    public let service: String
    /// Bare method name from the request, e.g. "Create".
    public let method: String
    /// The ttrpc stream id the response will be sent on.
    public let streamID: UInt32
    /// The request's metadata.
    public let metadata: TTRPCMetadata
    /// The peer's SO_PEERCRED credentials; nil if they could not be read.
    public let peer: PeerCredentials?
    /// When the caller stops waiting (from the request's `timeout_nano`); nil for no deadline.
    /// When it passes, the handler's task is cancelled and the caller gets DEADLINE_EXCEEDED.
    public let deadline: ContinuousClock.Instant?

    public init(
        service: String, method: String, streamID: UInt32, metadata: TTRPCMetadata = [:],
        peer: PeerCredentials? = nil, deadline: ContinuousClock.Instant? = nil
    ) {
        self.service = service
        self.method = method
        self.streamID = streamID
        self.metadata = metadata
        self.peer = peer
        self.deadline = deadline
    }

    /// containerd's namespace for this call (metadata "containerd-namespace-ttrpc"), if sent.
    public var containerdNamespace: String? { metadata[TTRPCMetadata.containerdNamespaceKey] }
}
