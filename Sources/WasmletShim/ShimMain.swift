// Entry point: dispatches on the action containerd names.

public enum ShimMain {
    public static func run(arguments: [String]) -> Int32 {
        let parsed = ShimArguments(parsing: Array(arguments.dropFirst()))
        if parsed.version {
            FileIO.writeAll(1, "containerd-shim-wasmlet-v1 \(ShimContext.version)\n")
            return 0
        }
        if parsed.info {
            return InfoCommand.run()
        }
        switch parsed.action {
        case "start":
            return StartCommand.run(parsed)
        case "delete":
            return DeleteCommand.run(parsed)
        default:
            let what = parsed.action.isEmpty ? "no action given" : "unknown action \"\(parsed.action)\""
            FileIO.writeAll(
                2,
                "containerd-shim-wasmlet-v1: \(what); usage: containerd-shim-wasmlet-v1 -namespace NS "
                    + "-address ADDR -id ID [-debug] [-bundle DIR] start|delete; or: containerd-shim-wasmlet-v1 -info\n")
            return 1
        }
    }
}
