// Part of WasmletTestSupport, which every test target depends on.

import Foundation

/// Runs blocking work (a loop of socket round trips to a child process, say) on a thread of its
/// own and suspends until it is done. Every suite of the test bundle runs in one process, on a
/// concurrency pool of one thread per core (two here), which hundreds of parallel tests keep
/// busy: work that holds a pool thread for seconds delays every other test's continuations by
/// as much.
package func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
