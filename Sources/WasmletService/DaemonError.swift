/// A failure that stops the daemon, worded for the operator.
public enum DaemonError: Error, CustomStringConvertible {
    case startup(String)
    public var description: String {
        switch self {
        case .startup(let message): message
        }
    }
}
