// Answers the shim gives itself when wasmletd cannot be reached. Since guests run inside the
// daemon, no daemon means no running guest: every task is reported stopped with exit 137, so
// containerd can finish its Wait/State/Delete sequence instead of hanging.

public struct LocalAnswer: Sendable, Equatable {
    public var response: TTRPCResponse
    /// A Shutdown was answered: the server exits if it has no tasks left (or `now` was set).
    public var shutdownRequested = false
}

public enum LocalAnswers {
    /// "wasmletd is not running: cannot connect to /run/wasmlet/wasmlet.sock: No such file or directory"
    public static func unreachableMessage(path: String, error: SystemError?) -> String {
        "wasmletd is not running: cannot connect to \(path): \(error.map(\.description) ?? "not connected")"
    }

    /// The answer to `call` without a daemon. `unreachable` is the message for calls the shim
    /// cannot serve itself. Delete also unmounts the task's rootfs and forgets the task.
    public static func answer(
        _ call: TaskCall, tasks: inout TaskTable, context: ShimContext, unreachable: String
    ) -> LocalAnswer {
        guard call.isTaskService else { return LocalAnswer(response: .error(StatusCode.unavailable, unreachable)) }
        let pid = context.pidValue
        switch call.method {
        case "State", "Wait", "Delete":
            guard call.execID.isEmpty, let entry = tasks[call.id] else {
                let what = call.execID.isEmpty ? "task \(call.id)" : "process \(call.execID) of task \(call.id)"
                return LocalAnswer(response: .error(StatusCode.notFound, "\(what) not found; \(unreachable)"))
            }
            // Without the daemon nothing runs any more; a task never seen exiting ended now.
            let exit = entry.exit ?? .lost()
            tasks.recordExit(call.id, exit)
            switch call.method {
            case "State":
                return LocalAnswer(response: .ok(TaskResponses.state(
                    id: entry.id, bundle: entry.bundle, pid: pid, status: TaskStatus.stopped, exit: exit)))
            case "Wait":
                return LocalAnswer(response: .ok(TaskResponses.wait(exit)))
            default:
                if entry.mounted, let error = RootfsMounts.unmountAll(entry.rootfs) {
                    context.log.error("Delete \(call.id): \(error)")
                }
                tasks.remove(call.id)
                return LocalAnswer(response: .ok(TaskResponses.delete(pid: pid, exit: exit)))
            }
        case "Kill":
            return LocalAnswer(response: .ok())
        case "Connect":
            return LocalAnswer(response: .ok(TaskResponses.connect(shimPID: pid, taskPID: pid, version: ShimContext.version)))
        case "Pids":
            return LocalAnswer(response: .ok(TaskResponses.pids([pid])))
        case "Shutdown":
            return LocalAnswer(response: .ok(), shutdownRequested: true)
        default:
            return LocalAnswer(response: .error(StatusCode.unavailable, unreachable))
        }
    }

    /// The answer to a call that was in flight when the daemon connection broke: a Wait on a
    /// known task gets its (now recorded) exit; anything else UNAVAILABLE.
    public static func lostInFlight(_ call: TaskCall, tasks: TaskTable) -> TTRPCResponse {
        if call.isInit("Wait"), let exit = tasks[call.id]?.exit {
            return .ok(TaskResponses.wait(exit))
        }
        return .error(
            StatusCode.unavailable,
            "wasmletd connection lost during \(call.method); the task is reported exited (137)")
    }
}
