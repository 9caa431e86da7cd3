import Testing

/// Every end-to-end test spawns real `wasmletd` processes; they run one suite at a time (nested
/// in this one) so timing-sensitive checks are not starved on a 2-core machine.
@Suite(.serialized)
struct DaemonEndToEndTests {}
