import CWasmletInterrupt
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
}
