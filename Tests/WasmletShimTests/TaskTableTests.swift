import Testing

@testable import WasmletShim

@Suite struct TaskTableTests {
    let context = ShimContext(
        pid: 321, namespace: "ns", group: "g", ttrpcAddress: "", daemonSocketPath: "/run/w.sock",
        socketPath: "/tmp/none", log: ShimLog(debugEnabled: false))

    private func call(_ method: String, _ id: String, exec: String = "") -> TaskCall {
        var call = TaskCall(method: method, id: id)
        call.execID = exec
        return call
    }

    @Test func daemonLossMarksRunningTasksOnly() {
        var tasks = TaskTable()
        tasks.insertCreating(id: "a", bundle: "/b/a", mounted: false)
        tasks.setState("a", .running)
        tasks.insertCreating(id: "b", bundle: "/b/b", mounted: false)
        tasks.setState("b", .created)
        tasks.insertCreating(id: "c", bundle: "/b/c", mounted: false)
        tasks.setState("c", .running)
        tasks.recordExit("c", TaskExit(status: 0, exitedAt: Timestamp(seconds: 1, nanos: 0)))
        let time = Timestamp(seconds: 99, nanos: 0)
        let lost = tasks.markAllLost(at: time)
        #expect(lost.map(\.id) == ["a"])
        #expect(tasks["a"]?.exit == TaskExit(status: 137, exitedAt: time))
        #expect(tasks["b"]?.exit == TaskExit(status: 137, exitedAt: time))  // never started: silent 137
        #expect(tasks["c"]?.exit?.status == 0)  // a real exit is never overwritten
    }

    @Test func localAnswers() throws {
        var tasks = TaskTable()
        tasks.insertCreating(id: "a", bundle: "/b/a", mounted: false)
        tasks.setState("a", .running)
        tasks.recordExit("a", TaskExit(status: 137, exitedAt: Timestamp(seconds: 5, nanos: 0)))
        let unreachable = "wasmletd is not running: cannot connect to /run/w.sock: No such file or directory"

        var answer = LocalAnswers.answer(call("State", "a"), tasks: &tasks, context: context, unreachable: unreachable)
        #expect(answer.response.isOK)
        #expect(answer.response.payload == TaskResponses.state(
            id: "a", bundle: "/b/a", pid: 321, status: TaskStatus.stopped,
            exit: TaskExit(status: 137, exitedAt: Timestamp(seconds: 5, nanos: 0))))

        answer = LocalAnswers.answer(call("Wait", "a"), tasks: &tasks, context: context, unreachable: unreachable)
        #expect(TaskResponses.decodeWait(answer.response.payload)?.status == 137)

        answer = LocalAnswers.answer(call("State", "zzz"), tasks: &tasks, context: context, unreachable: unreachable)
        #expect(answer.response.code == StatusCode.notFound)
        answer = LocalAnswers.answer(call("State", "a", exec: "e1"), tasks: &tasks, context: context, unreachable: unreachable)
        #expect(answer.response.code == StatusCode.notFound)

        for method in ["Kill", "Connect", "Pids"] {
            #expect(LocalAnswers.answer(call(method, "a"), tasks: &tasks, context: context, unreachable: unreachable).response.isOK)
        }
        for method in ["Create", "Exec", "Stats", "Update", "Pause"] {
            let response = LocalAnswers.answer(call(method, "a"), tasks: &tasks, context: context, unreachable: unreachable).response
            #expect(response == .error(StatusCode.unavailable, unreachable))
        }
        answer = LocalAnswers.answer(call("Shutdown", ""), tasks: &tasks, context: context, unreachable: unreachable)
        #expect(answer.response.isOK && answer.shutdownRequested)

        answer = LocalAnswers.answer(call("Delete", "a"), tasks: &tasks, context: context, unreachable: unreachable)
        #expect(answer.response.payload == TaskResponses.delete(
            pid: 321, exit: TaskExit(status: 137, exitedAt: Timestamp(seconds: 5, nanos: 0))))
        #expect(tasks.isEmpty)
    }

    @Test func aCreatedTaskAnsweredLocallyGets137() {
        var tasks = TaskTable()
        tasks.insertCreating(id: "n", bundle: "/b/n", mounted: false)
        tasks.setState("n", .created)
        let answer = LocalAnswers.answer(call("Wait", "n"), tasks: &tasks, context: context, unreachable: "x")
        #expect(TaskResponses.decodeWait(answer.response.payload)?.status == 137)
        // And the recorded exit stays the same afterwards.
        #expect(tasks["n"]?.exit == TaskResponses.decodeWait(answer.response.payload))
    }

    @Test func inFlightAnswers() {
        var tasks = TaskTable()
        tasks.insertCreating(id: "a", bundle: "/b", mounted: false)
        tasks.setState("a", .running)
        _ = tasks.markAllLost(at: Timestamp(seconds: 7, nanos: 0))
        #expect(TaskResponses.decodeWait(LocalAnswers.lostInFlight(call("Wait", "a"), tasks: tasks).payload)?.status == 137)
        let other = LocalAnswers.lostInFlight(call("Stats", "a"), tasks: tasks)
        #expect(other.code == StatusCode.unavailable)
        #expect(other.message == "wasmletd connection lost during Stats; the task is reported exited (137)")
    }
}
