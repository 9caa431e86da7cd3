import Synchronization
import WasmletAPI
import WasmletRuntime
import WasmletStore

/// Builds List's (and Inspect's) answers as wire bytes, keeping each instance's encoded message
/// between calls.
///
/// Why: `wasmletctl list` with 10,000 instances spent most of the daemon's time copying
/// snapshots, building 10,000 `Wasmlet_V1_Instance` messages, serializing and freeing them, for
/// answers that mostly did not change since the last List. An instance's (serial, state) fixes
/// everything its message shows (labels, limits and module are set at create, the start time at
/// start, the exit record at exit), so the encoded message is kept under that pair and reused
/// until the instance moves on. The cache holds one entry per listed live instance (its message,
/// about 200 bytes); a List of every instance drops the entries of instances that are gone.
final class ListResponseEncoder: Sendable {
    private struct Encoded {
        var serial: UInt32
        var state: InstanceSnapshot.State
        /// The instance as field 1 of ListResponse: tag, length, message.
        var frame: [UInt8]
        /// A running service's frame holds its request counts, which change without its state:
        /// never reused.
        var changing = false
    }

    private let cache = Mutex<[InstanceKey: Encoded]>([:])

    /// `ListResponse` for the live instances `runtime` lists and the recovered ones in
    /// `directory`, filtered and in key order.
    func responseBytes(
        runtime: WasmletRuntime, directory: InstanceDirectory, namespace: String?, selector: [String: String],
        defaultStackBytes: UInt64
    ) throws -> [UInt8] {
        // A copy of the table (copy-on-write: nothing is copied unless it changes meanwhile).
        let known = cache.withLock { $0 }
        var reused: [[UInt8]?] = []
        let listed = runtime.list(namespace: namespace, labels: selector) { key, serial, state in
            if let entry = known[key], !entry.changing, entry.serial == serial, entry.state == state {
                reused.append(entry.frame)
                return true
            }
            reused.append(nil)
            return false
        }

        var live: [(key: InstanceKey, frame: [UInt8])] = []
        live.reserveCapacity(listed.count)
        var fresh: [(InstanceKey, Encoded)] = []
        for (index, item) in listed.enumerated() {
            if let frame = reused[index] {
                live.append((item.key, frame))
            } else if let snapshot = item.snapshot {
                let message = MessageMapping.instance(
                    snapshot, modulePath: directory.modulePath(for: snapshot.key, serial: snapshot.serial),
                    defaultStackBytes: defaultStackBytes)
                let frame = try Self.frame(message)
                live.append((item.key, frame))
                fresh.append((item.key, Encoded(serial: item.serial, state: item.state, frame: frame, changing: snapshot.serving != nil)))
            }
        }
        let everything = namespace == nil && selector.isEmpty
        if !fresh.isEmpty || everything {
            cache.withLock { table in
                if everything, table.count > listed.count {
                    // Forget instances that are gone: keep only what this List saw.
                    let seen = Set(listed.lazy.map(\.key))
                    table = table.filter { seen.contains($0.key) }
                }
                for (key, entry) in fresh { table[key] = entry }
            }
        }

        // Recovered instances (exited before a restart) are few and never change: encode them.
        var recovered = try directory.allRecovered().filter { record in
            (namespace == nil || record.namespace == namespace) && selector.allSatisfy { record.labels[$0.key] == $0.value }
        }.map { record in
            (key: InstanceKey(namespace: record.namespace, id: record.id),
             frame: try Self.frame(MessageMapping.instance(record, defaultStackBytes: defaultStackBytes)))
        }
        recovered.sort { Self.inOrder($0.key, $1.key) }
        return Self.merged(live, recovered)
    }

    /// One live instance's frame, from the cache when it is current. The frame is also the whole
    /// of an `InspectResponse` (its instance is field 1 too). Throws NOT_FOUND like `inspect`.
    func instanceFrame(
        _ key: InstanceKey, runtime: WasmletRuntime, directory: InstanceDirectory, defaultStackBytes: UInt64
    ) throws -> [UInt8] {
        let cached = cache.withLock { $0[key] }
        let item = try runtime.inspect(key) { serial, state in
            cached?.changing == false && cached?.serial == serial && cached?.state == state
        }
        guard let snapshot = item.snapshot else { return cached!.frame }
        let message = MessageMapping.instance(
            snapshot, modulePath: directory.modulePath(for: key, serial: snapshot.serial), defaultStackBytes: defaultStackBytes)
        let frame = try Self.frame(message)
        cache.withLock { $0[key] = Encoded(serial: item.serial, state: item.state, frame: frame, changing: snapshot.serving != nil) }
        return frame
    }

    /// Forgets an instance's entry (Delete), so the cache does not wait for a full List to shrink.
    func forget(_ key: InstanceKey) {
        _ = cache.withLock { $0.removeValue(forKey: key) }
    }

    private static func inOrder(_ a: InstanceKey, _ b: InstanceKey) -> Bool { (a.namespace, a.id) < (b.namespace, b.id) }

    /// The frames of two key-ordered lists, merged in key order, as one byte string.
    private static func merged(
        _ a: [(key: InstanceKey, frame: [UInt8])], _ b: [(key: InstanceKey, frame: [UInt8])]
    ) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(a.reduce(0) { $0 + $1.frame.count } + b.reduce(0) { $0 + $1.frame.count })
        var (i, j) = (0, 0)
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && !inOrder(b[j].key, a[i].key)) {
                bytes.append(contentsOf: a[i].frame)
                i += 1
            } else {
                bytes.append(contentsOf: b[j].frame)
                j += 1
            }
        }
        return bytes
    }

    /// `instance` as field 1 (length-delimited) of ListResponse. The response is the
    /// concatenation of its instances' frames, which is how protobuf writes a repeated field;
    /// serializing each message alone also spares SwiftProtobuf sizing every nested message once
    /// more per level of nesting.
    static func frame(_ instance: Wasmlet_V1_Instance) throws -> [UInt8] {
        let encoded: [UInt8] = try instance.serializedBytes()
        var frame: [UInt8] = []
        frame.reserveCapacity(encoded.count + 4)
        frame.append(0x0A)  // field 1, wire type 2
        var length = encoded.count
        while length >= 0x80 {
            frame.append(UInt8(truncatingIfNeeded: length) | 0x80)
            length >>= 7
        }
        frame.append(UInt8(length))
        frame.append(contentsOf: encoded)
        return frame
    }

    /// `ListResponse { instances }` as wire bytes (what `responseBytes` assembles from frames).
    static func responseBytes(of instances: [Wasmlet_V1_Instance]) throws -> [UInt8] {
        try instances.reduce(into: []) { $0 += try frame($1) }
    }
}
