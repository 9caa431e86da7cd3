/// Polls `condition` every `interval` until it holds or `timeout` passes; returns whether it
/// held (one last check after the deadline). For a state to wait for, never a time: the
/// timeout is a hang guard, generous because suites run in parallel on a loaded 2-core machine.
/// A target whose checks are expensive (a ttrpc round trip) polls less often.
package func eventually(
    timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let end = clock.now + timeout
    while clock.now < end {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
