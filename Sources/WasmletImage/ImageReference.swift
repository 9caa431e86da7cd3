/// An image reference as Docker and containerd normalize it: `hello` is
/// `docker.io/library/hello:latest`, `ghcr.io/x/y:tag` stays as it is, `localhost:5000/a/b` is
/// `localhost:5000/a/b:latest`. The rules are those of github.com/distribution/reference
/// (`ParseNormalizedNamed` followed by `TagNameOnly`).
public struct ImageReference: Equatable, Sendable, CustomStringConvertible {
    /// The registry host, with its port if any: `docker.io`, `ghcr.io`, `localhost:5000`.
    public var domain: String
    /// The repository path inside the registry: `library/hello`, `x/y`.
    public var path: String
    /// The tag; `latest` when neither a tag nor a digest was given.
    public var tag: String?
    /// `sha256:<hex>` when the reference pins a digest.
    public var digest: String?

    public static let defaultDomain = "docker.io"
    public static let defaultTag = "latest"

    /// `domain/path`.
    public var name: String { domain + "/" + path }

    /// The full normalized reference: `docker.io/library/hello:latest`, or `name@sha256:...`
    /// (`name:tag@sha256:...` when both are given).
    public var description: String {
        var text = name
        if let tag { text += ":" + tag }
        if let digest { text += "@" + digest }
        return text
    }

    /// Parses and normalizes `text`; throws `ImageError.invalidReference` saying what is wrong.
    public init(parsing text: String) throws {
        func invalid(_ why: String) -> ImageError { .invalidReference(text, why) }
        guard !text.isEmpty else { throw invalid("it is empty") }
        guard text.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            throw invalid("it contains spaces, control or non-ASCII characters")
        }
        var rest = Substring(text)

        if let at = rest.firstIndex(of: "@") {
            let digest = rest[rest.index(after: at)...]
            rest = rest[..<at]
            let parts = digest.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == "sha256", parts[1].count == 64,
                parts[1].utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
            else { throw invalid("the digest must be sha256: followed by 64 lowercase hex digits") }
            self.digest = String(digest)
        } else {
            self.digest = nil
        }

        // A tag is a ":" after the last "/" (a ":" before it is a registry port).
        let lastSlash = rest.lastIndex(of: "/") ?? rest.startIndex
        if let colon = rest[lastSlash...].lastIndex(of: ":") {
            let tag = rest[rest.index(after: colon)...]
            rest = rest[..<colon]
            guard Self.isValidTag(tag) else {
                throw invalid("the tag \"\(tag)\" must be 1-128 characters of A-Z a-z 0-9 _ . - not starting with . or -")
            }
            self.tag = String(tag)
        } else {
            self.tag = digest == nil ? Self.defaultTag : nil
        }

        guard !rest.isEmpty else { throw invalid("it has no repository name") }
        // The first component is a registry when it has a "." or ":", is "localhost", or has
        // upper-case letters (which a repository path may not have).
        var domain = Self.defaultDomain
        var path = rest
        if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" || first.lowercased() != first {
                domain = String(first)
                path = rest[rest.index(after: slash)...]
            }
        }
        if domain == "index.docker.io" { domain = Self.defaultDomain }
        if domain == Self.defaultDomain && !path.contains("/") { path = "library/" + path }

        guard Self.isValidDomain(domain) else {
            throw invalid("\"\(domain)\" is not a valid registry host[:port]")
        }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        for component in components {
            if component.lowercased() != component {
                throw invalid("repository names must be lowercase")
            }
            guard Self.isValidPathComponent(component) else {
                throw invalid(
                    "\"\(component)\" is not a valid path component (lowercase letters and digits, "
                        + "separated by one \".\", one or two \"_\" or any number of \"-\")")
            }
        }
        guard domain.utf8.count + 1 + path.utf8.count <= 255 else {
            throw invalid("the repository name is longer than 255 characters")
        }
        self.domain = domain
        self.path = String(path)
    }

    static func isValidTag(_ tag: Substring) -> Bool {
        guard let first = tag.utf8.first, tag.utf8.count <= 128, isWordCharacter(first) else { return false }
        return tag.utf8.allSatisfy { isWordCharacter($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isWordCharacter(_ c: UInt8) -> Bool {
        isLowerAlphanumeric(c) || (c >= 65 && c <= 90) || c == UInt8(ascii: "_")
    }

    private static func isLowerAlphanumeric(_ c: UInt8) -> Bool {
        (c >= 97 && c <= 122) || (c >= 48 && c <= 57)
    }

    /// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
    static func isValidPathComponent(_ component: Substring) -> Bool {
        let bytes = Array(component.utf8)
        guard let first = bytes.first, let last = bytes.last, isLowerAlphanumeric(first), isLowerAlphanumeric(last)
        else { return false }
        var index = 0
        while index < bytes.count {
            if isLowerAlphanumeric(bytes[index]) {
                index += 1
                continue
            }
            var end = index
            while end < bytes.count, !isLowerAlphanumeric(bytes[end]) { end += 1 }
            let separator = bytes[index..<end]
            let ok =
                separator.elementsEqual([UInt8(ascii: ".")]) || separator.elementsEqual([UInt8(ascii: "_")])
                || separator.elementsEqual([UInt8(ascii: "_"), UInt8(ascii: "_")])
                || separator.allSatisfy { $0 == UInt8(ascii: "-") }
            if !ok { return false }
            index = end
        }
        return true
    }

    /// `host[:port]`, host being dot-separated labels of letters, digits and inner "-".
    static func isValidDomain(_ domain: String) -> Bool {
        var host = Substring(domain)
        if let colon = domain.firstIndex(of: ":") {
            let port = domain[domain.index(after: colon)...]
            guard !port.isEmpty, port.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return false }
            host = domain[..<colon]
        }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            let bytes = Array(label.utf8)
            func alnum(_ c: UInt8) -> Bool { isLowerAlphanumeric(c) || (c >= 65 && c <= 90) }
            guard let first = bytes.first, let last = bytes.last, alnum(first), alnum(last) else { return false }
            return bytes.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") }
        }
    }
}
