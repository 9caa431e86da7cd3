import Glibc
import Synchronization
import WasmletRuntime

/// Listening sockets a shim handed over for one container (see ListenerHandoffServer), owned
/// by whoever holds this: `close()` is idempotent, so every failure path can simply call it.
package final class HandedOffListeners: Sendable {
    /// The `wasmlet.dev/listen` value the shim bound them for.
    let annotation: String
    /// Their bound addresses as the shim reported them, in order (`0.0.0.0:8080`).
    let bound: [String]
    private let state: Mutex<[Int32]?>

    init(annotation: String, bound: [String], descriptors: [Int32]) {
        self.annotation = annotation
        self.bound = bound
        self.state = Mutex(descriptors)
    }

    /// The descriptors while they are open (empty once closed).
    var descriptors: [Int32] { state.withLock { $0 ?? [] } }

    var isClosed: Bool { state.withLock { $0 == nil } }

    /// Closes every descriptor (once).
    func close() {
        let open = state.withLock { current -> [Int32] in
            defer { current = nil }
            return current ?? []
        }
        for fd in open { Glibc.close(fd) }
    }

    /// Gives the descriptors, in order, to the runtime's owner type (``InheritedListener``),
    /// which a Create passes to the runtime; this then owns none (`close()` does nothing).
    func handOver() -> [InheritedListener] {
        let open = state.withLock { current -> [Int32] in
            defer { current = nil }
            return current ?? []
        }
        return open.map { InheritedListener(adopting: $0) }
    }

    deinit { close() }
}

/// Handed-off listeners waiting for their container's Create, by (namespace, id). Bounded: at
/// most `capacity` entries, each kept at most `lifetime`; an expired entry's sockets are
/// closed by `sweep` (the handoff server sweeps about once a second), so a shim whose Create
/// never comes (it died, or its Create failed before reaching the daemon) leaves nothing open.
package final class ListenerHandoffTable: Sendable {
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    private struct Entry {
        var listeners: HandedOffListeners
        var expires: ContinuousClock.Instant
    }

    let capacity: Int
    let lifetime: Duration
    private let entries = Mutex<[InstanceKey: Entry]>([:])

    package init(capacity: Int = 256, lifetime: Duration = .seconds(60)) {
        self.capacity = capacity
        self.lifetime = lifetime
    }

    var count: Int { entries.withLock { $0.count } }

    /// Keeps `listeners` for `key` until claimed or expired. A second handoff for the same
    /// key replaces the first (a retried Create), whose sockets are closed. Refused when the
    /// table is full of entries that have not expired.
    func deposit(_ listeners: HandedOffListeners, for key: InstanceKey, now: ContinuousClock.Instant = .now) throws(Refusal) {
        sweep(now: now)
        let replaced: HandedOffListeners?
        do {
            replaced = try entries.withLock { table throws(Refusal) -> HandedOffListeners? in
                if table[key] == nil, table.count >= capacity {
                    throw Refusal(
                        description: "wasmletd holds \(capacity) handed-off listener sets no Create has claimed yet; try again later")
                }
                let old = table[key]?.listeners
                table[key] = Entry(listeners: listeners, expires: now + lifetime)
                return old
            }
        }
        replaced?.close()
    }

    /// Takes the listeners handed off for `key`, if any (they are then the caller's to close).
    func claim(_ key: InstanceKey) -> HandedOffListeners? {
        entries.withLock { $0.removeValue(forKey: key)?.listeners }
    }

    /// Closes and forgets entries past their lifetime; returns their keys.
    @discardableResult
    func sweep(now: ContinuousClock.Instant = .now) -> [InstanceKey] {
        let expired = entries.withLock { table -> [(InstanceKey, HandedOffListeners)] in
            let keys = table.filter { $0.value.expires <= now }.map(\.key)
            return keys.compactMap { key in table.removeValue(forKey: key).map { (key, $0.listeners) } }
        }
        for (_, listeners) in expired { listeners.close() }
        return expired.map(\.0)
    }

    /// Closes everything (daemon shutdown).
    func closeAll() {
        let all = entries.withLock { table -> [HandedOffListeners] in
            defer { table = [:] }
            return table.values.map(\.listeners)
        }
        for listeners in all { listeners.close() }
    }
}
