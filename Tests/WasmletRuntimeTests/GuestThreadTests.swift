import CWasmletInterrupt
import Dispatch
import Foundation
import Glibc
import Synchronization
import Testing

@testable import WasmletRuntime

/// Guest threads are reused; nothing a guest did to its thread may reach the next guest.
@Suite struct GuestThreadTests {
    /// Runs `body` on a guest thread and waits for it.
    private func onGuestThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try GuestThread.spawn { continuation.resume(returning: body()) }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    private static func nice() -> Int32 {
        getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(wasmlet_gettid()))
    }

    @Test func sequentialGuestsShareThreads() async throws {
        var threads = Set<Int32>()
        for _ in 0..<20 {
            threads.insert(try await onGuestThread { wasmlet_gettid() })
        }
        // Other suites start guests at the same time and may take a parked thread, but not
        // every time: without reuse every guest would have a thread of its own.
        #expect(threads.count < 20)
    }

    @Test func aDemotedThreadIsBackToNormalPriorityForItsNextGuest() async throws {
        let baseline = try await onGuestThread { Self.nice() }
        for _ in 0..<10 {
            // What the runtime does to a long-running guest's thread.
            let demoted = try await onGuestThread { () -> Int32 in
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(wasmlet_gettid()), baseline + 10)
                return Self.nice()
            }
            #expect(demoted == baseline + 10)
            #expect(try await onGuestThread { Self.nice() } == baseline)
        }
    }

    /// A guest started from another's completion runs on the finishing thread, after that
    /// guest's body has returned (not inside it); one started outside a completion, or a second
    /// one from the same completion, goes to a thread of its own.
    @Test func aGuestStartedFromACompletionRunsOnTheFinishingThreadAfterIt() async throws {
        struct Seen: Sendable {
            var first: Int32 = 0
            var firstReturned = false
            var handedOver: Int32 = 0
            var handedOverSawFirstReturned = false
            var second: Int32 = 0
        }
        let seen = Mutex(Seen())
        let done = DispatchSemaphore(value: 0)
        let secondRan = DispatchSemaphore(value: 0)
        try GuestThread.spawn {
            seen.withLock { $0.first = wasmlet_gettid() }
            GuestThread.finishing {
                try? GuestThread.spawn {
                    seen.withLock {
                        $0.handedOver = wasmlet_gettid()
                        $0.handedOverSawFirstReturned = $0.firstReturned
                    }
                    done.signal()
                }
                try? GuestThread.spawn {
                    seen.withLock { $0.second = wasmlet_gettid() }
                    secondRan.signal()
                }
                // The second runs elsewhere while this guest has not returned (bounded: a
                // second wrongly held back for this thread would never come).
                _ = secondRan.wait(timeout: .now() + 60)
            }
            seen.withLock { $0.firstReturned = true }
        }
        #expect(done.wait(timeout: .now() + 60) == .success)
        let result = seen.withLock { $0 }
        #expect(result.handedOver == result.first)
        #expect(result.handedOverSawFirstReturned)
        #expect(result.second != 0 && result.second != result.first)
    }
}
