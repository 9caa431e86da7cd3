import WasmletService
import WasmletSystemd

/// Keeps `systemctl status` current: `STATUS=<n> running, <m> created, <k> exited`.
enum StatusReporter {
    static func text(_ counts: (running: Int, created: Int, exited: Int)) -> String {
        "\(counts.running) running, \(counts.created) created, \(counts.exited) exited"
    }

    /// Sends the status every `interval` until the task is cancelled; only when it changed, or
    /// at least once a minute (a status line is cheap, but an idle node needs no chatter).
    static func run(instances: InstanceService, notifier: SystemdNotifier, interval: Duration) async {
        var last = ""
        var sinceLast = Duration.zero
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let text = text(instances.counts())
            sinceLast += interval
            if text != last || sinceLast >= .seconds(60) {
                notifier.status(text)
                last = text
                sinceLast = .zero
            }
        }
    }
}
