/// A value written by a person (a flag, a configuration key, an annotation) that does not parse;
/// `description` is a one-line explanation that says what to write instead.
public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension StringProtocol {
    /// Without leading and trailing white space.
    func trimmingSpaces() -> Substring {
        var view = Substring(self)
        while view.first?.isWhitespace == true { view.removeFirst() }
        while view.last?.isWhitespace == true { view.removeLast() }
        return view
    }
}
