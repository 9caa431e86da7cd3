import Dispatch
import Synchronization

/// The deadlines of per-request runs, on one Dispatch timer for the whole runtime.
///
/// A timer source per request (create, arm, cancel) cost a Dispatch worker about a tenth of the
/// daemon's CPU at 8,000 requests/s. Here a run's deadline is an entry in a min-heap; the timer
/// is re-armed only when a new entry is due before the one it is set for, which a stream of
/// requests with the same timeout never is. An entry leaves the heap when its run ends, so the
/// heap holds the runs going on now, and the timer fires about once per timeout, not per request.
final class RequestDeadlines: Sendable {
    fileprivate struct Entry {
        let due: UInt64
        let id: UInt64
        let fire: @Sendable () -> Void
    }

    fileprivate struct State {
        var heap: [Entry] = []
        /// Heap index of each entry, by id, so an entry can leave from the middle.
        var positions: [UInt64: Int] = [:]
        var nextID: UInt64 = 1
        /// What the timer is set for; nil when it is idle.
        var armedFor: UInt64?
    }

    private let state = Mutex(State())
    private let timer: TimerSource

    init() {
        let source = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "wasmlet.request-deadlines"))
        timer = TimerSource(source)
        source.setEventHandler { [weak self] in self?.fireDue() }
        source.schedule(deadline: .distantFuture)
        source.resume()
    }

    deinit { timer.source.cancel() }

    /// Calls `fire` (on the deadlines' queue) `milliseconds` from now unless `remove` comes
    /// first; returns the id to remove it with.
    func add(milliseconds: UInt64, _ fire: @escaping @Sendable () -> Void) -> UInt64 {
        let due = DispatchTime.now().uptimeNanoseconds &+ min(milliseconds, UInt64(1) << 40) &* 1_000_000
        return state.withLock { state in
            let id = state.nextID
            state.nextID &+= 1
            state.push(Entry(due: due, id: id, fire: fire))
            if state.armedFor.map({ due < $0 }) ?? true {
                state.armedFor = due
                // Under the lock, so two adds cannot leave the timer set for the later one.
                timer.source.schedule(deadline: DispatchTime(uptimeNanoseconds: due))
            }
            return id
        }
    }

    /// The run ended: its deadline goes. The timer stays set; if it fires for this entry, it
    /// finds nothing due and sets itself for the next.
    func remove(_ id: UInt64) {
        state.withLock { state in
            guard let index = state.positions[id] else { return }
            state.remove(at: index)
        }
    }

    var count: Int { state.withLock { $0.heap.count } }

    private func fireDue() {
        let now = DispatchTime.now().uptimeNanoseconds
        let due = state.withLock { state -> [@Sendable () -> Void] in
            var due: [@Sendable () -> Void] = []
            while let first = state.heap.first, first.due <= now {
                due.append(first.fire)
                state.remove(at: 0)
            }
            state.armedFor = state.heap.first?.due
            timer.source.schedule(deadline: state.armedFor.map { DispatchTime(uptimeNanoseconds: $0) } ?? .distantFuture)
            return due
        }
        for fire in due { fire() }
    }

    /// A Dispatch source is thread-safe but not marked Sendable.
    private final class TimerSource: @unchecked Sendable {
        let source: DispatchSourceTimer
        init(_ source: DispatchSourceTimer) { self.source = source }
    }
}

extension RequestDeadlines.State {
    fileprivate mutating func push(_ entry: RequestDeadlines.Entry) {
        heap.append(entry)
        positions[entry.id] = heap.count - 1
        siftUp(heap.count - 1)
    }

    fileprivate mutating func remove(at index: Int) {
        positions[heap[index].id] = nil
        let last = heap.removeLast()
        guard index < heap.count else { return }
        heap[index] = last
        positions[last.id] = index
        siftUp(index)
        siftDown(positions[last.id]!)
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].due < heap[parent].due else { return }
            swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            var smallest = left
            if left + 1 < heap.count, heap[left + 1].due < heap[left].due { smallest = left + 1 }
            guard heap[smallest].due < heap[parent].due else { return }
            swapAt(parent, smallest)
            parent = smallest
        }
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        positions[heap[a].id] = a
        positions[heap[b].id] = b
    }
}
