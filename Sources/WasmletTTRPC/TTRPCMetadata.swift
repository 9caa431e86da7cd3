/// The `metadata` of a ttrpc request: ordered key/value pairs; a key may repeat.
/// containerd sends its namespace under `TTRPCMetadata.containerdNamespaceKey`.
public struct TTRPCMetadata: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence,
    CustomStringConvertible
{
    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: String
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// "containerd-namespace-ttrpc".
    public static let containerdNamespaceKey = "containerd-namespace-ttrpc"

    public var entries: [Entry]

    public init(_ entries: [Entry] = []) { self.entries = entries }

    public init(dictionaryLiteral elements: (String, String)...) {
        entries = elements.map { Entry(key: $0.0, value: $0.1) }
    }

    /// The first value under `key`; setting replaces every value under it.
    public subscript(key: String) -> String? {
        get { entries.first { $0.key == key }?.value }
        set {
            entries.removeAll { $0.key == key }
            if let newValue { entries.append(Entry(key: key, value: newValue)) }
        }
    }

    /// Every value under `key`, in order.
    public func values(for key: String) -> [String] {
        entries.filter { $0.key == key }.map(\.value)
    }

    public mutating func append(key: String, value: String) {
        entries.append(Entry(key: key, value: value))
    }

    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[Entry]> { entries.makeIterator() }

    public var description: String {
        "[" + entries.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "]"
    }
}

extension TTRPCMetadata {
    init(_ keyValues: [Ttrpc_KeyValue]) {
        self.init(keyValues.map { Entry(key: $0.key, value: $0.value) })
    }

    var keyValues: [Ttrpc_KeyValue] {
        entries.map { entry in
            var kv = Ttrpc_KeyValue()
            kv.key = entry.key
            kv.value = entry.value
            return kv
        }
    }
}
