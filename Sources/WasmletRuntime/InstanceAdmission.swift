import Synchronization

/// The instance limit (`maxInstances`, and the process's ceiling), counted without the runtime's
/// lock: live instance records and per-request runs together, in one atomic word.
///
/// Why not under the lock: every HTTP request admits a run, and requests on every core queued on
/// the runtime's lock (a priority-inheriting futex, so each hand-over is a context switch). An
/// add, then a check of the new total, admits at most the limit however many threads race: the
/// one that takes the count past it sees so, and takes its add back.
final class InstanceAdmission: Sendable {
    private let admitted = Atomic<Int>(0)
    private let requests = Atomic<Int>(0)
    let maxInstances: Int
    let ceiling: InstanceCeiling?

    init(maxInstances: Int, ceiling: InstanceCeiling?) {
        self.maxInstances = maxInstances
        self.ceiling = ceiling
    }

    /// Counts one more live instance (or request run), or throws RESOURCE_EXHAUSTED naming the
    /// limit, and then counts nothing.
    func admit(request: Bool = false) throws(RuntimeError) {
        let total = admitted.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        if let ceiling, ceiling.instances < maxInstances, total > ceiling.instances {
            admitted.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            throw RuntimeError.resourceExhausted(
                "instance limit reached: \(ceiling.instances) live instances, the most this node's \(ceiling.limit) leaves room for (raise it to run more)")
        }
        guard total <= maxInstances else {
            admitted.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            throw RuntimeError.resourceExhausted("instance limit reached: \(maxInstances) live instances")
        }
        if request { requests.wrappingAdd(1, ordering: .relaxed) }
    }

    /// An admitted instance is gone (exited, or deleted before it started), or a run ended.
    func release(request: Bool = false) {
        admitted.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        if request { requests.wrappingSubtract(1, ordering: .relaxed) }
    }

    var requestsRunning: Int { max(0, requests.load(ordering: .relaxed)) }
}
