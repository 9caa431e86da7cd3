// The tasks this shim serves, as far as the shim needs to know them: where their rootfs is
// mounted, whether they were started, and how they ended. The daemon holds the real state; this
// is what lets the shim clean up mounts and answer for its tasks when the daemon is gone.

public struct TaskTable: Sendable {
    public enum State: Sendable, Equatable {
        /// Create forwarded, answer pending.
        case creating
        case created
        /// Start answered OK: the guest runs inside the daemon.
        case running
        case exited(TaskExit)
    }

    public struct Entry: Sendable, Equatable {
        public var id: String
        public var bundle: String
        /// Whether the shim mounted <bundle>/rootfs (and so must unmount it).
        public var mounted: Bool
        public var state: State

        public var rootfs: String { bundle + "/rootfs" }

        public var exit: TaskExit? {
            if case .exited(let exit) = state { return exit }
            return nil
        }
    }

    public private(set) var entries: [String: Entry] = [:]

    public init() {}

    public var isEmpty: Bool { entries.isEmpty }

    public subscript(id: String) -> Entry? { entries[id] }

    public mutating func insertCreating(id: String, bundle: String, mounted: Bool) {
        entries[id] = Entry(id: id, bundle: bundle, mounted: mounted, state: .creating)
    }

    public mutating func setState(_ id: String, _ state: State) {
        entries[id]?.state = state
    }

    /// Records an exit unless one is recorded already (the first report wins, so a later 137
    /// cannot overwrite the guest's real code).
    public mutating func recordExit(_ id: String, _ exit: TaskExit) {
        guard let entry = entries[id], entry.exit == nil else { return }
        entries[id]?.state = .exited(exit)
    }

    @discardableResult
    public mutating func remove(_ id: String) -> Entry? {
        entries.removeValue(forKey: id)
    }

    /// The daemon is gone, and with it every guest: running tasks become exited(137) and are
    /// returned (the caller publishes /tasks/exit for them). Created-but-never-started tasks
    /// also get 137 recorded, silently: containerd never saw them start.
    public mutating func markAllLost(at time: Timestamp) -> [Entry] {
        var newlyExited = [Entry]()
        for (id, entry) in entries {
            switch entry.state {
            case .running:
                entries[id]?.state = .exited(.lost(at: time))
                if let updated = entries[id] { newlyExited.append(updated) }
            case .created:
                entries[id]?.state = .exited(.lost(at: time))
            case .creating, .exited:
                break
            }
        }
        return newlyExited.sorted { $0.id < $1.id }
    }
}
