import Testing
import WasmletTestSupport

/// wasmletd says at start-up how many guests the kernel leaves room for, and warns when
/// limits.max_instances asks for more than that (creates past the ceiling are refused).
@Suite struct InstanceCeilingStartupTests {
    @Test func aMaxInstancesAboveTheKernelsCeilingIsWarnedOfAtStartUp() async throws {
        let directory = try TemporaryDirectory()
        // No node here leaves room for ten million guests: 65,530 mappings or 4 million pids at most.
        let daemon = try await DaemonProcess(directory: directory, arguments: ["--max-instances", "10000000"])
        defer { daemon.killAndReap() }
        let log = daemon.log
        #expect(log.contains("warning wasmletd: limits.max_instances is above what this node can hold: creates past "), "\(log)")
        #expect(log.contains("max_instances=10000000"), "\(log)")
    }

    @Test func theDefaultMaxInstancesLogsTheCeiling() async throws {
        let directory = try TemporaryDirectory()
        let daemon = try await DaemonProcess(directory: directory, arguments: ["--max-instances", "10"])
        defer { daemon.killAndReap() }
        let log = daemon.log
        #expect(log.contains("info wasmletd: instance ceiling [ceiling="), "\(log)")
        #expect(log.contains("max_instances=10]"), "\(log)")
    }
}
