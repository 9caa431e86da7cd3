import Foundation

/// The part of an OCI runtime spec (`<bundle>/config.json`) a Wasm task uses. Unknown fields
/// are ignored: containerd and CRI fill in much that has no meaning for a WASI guest
/// (namespaces, capabilities, seccomp, devices).
struct OCIRuntimeSpec: Decodable, Sendable {
    struct Process: Decodable, Sendable {
        var args: [String]?
        var env: [String]?
        var cwd: String?
        var terminal: Bool?
    }

    struct Root: Decodable, Sendable {
        var path: String
        var readonly: Bool?
    }

    struct Mount: Decodable, Sendable {
        var destination: String
        var type: String?
        var source: String?
        var options: [String]?
    }

    struct Linux: Decodable, Sendable {
        struct Resources: Decodable, Sendable {
            struct Memory: Decodable, Sendable { var limit: Int64? }
            struct CPU: Decodable, Sendable {
                var quota: Int64?
                var period: UInt64?
                var shares: UInt64?
            }
            var memory: Memory?
            var cpu: CPU?
        }
        var resources: Resources?
    }

    var process: Process?
    var root: Root?
    var mounts: [Mount]?
    var annotations: [String: String]?
    var linux: Linux?

    /// Reads and decodes `<bundle>/config.json`, with errors that name the file and the problem.
    static func load(bundle: String) throws -> OCIRuntimeSpec {
        let path = (bundle as NSString).appendingPathComponent("config.json")
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TaskError.invalidSpec("cannot read \(path): \((error as NSError).localizedDescription)")
        }
        return try decode(data, path: path)
    }

    /// Decodes a config.json's bytes; `path` names the file in errors.
    static func decode(_ data: Data, path: String) throws -> OCIRuntimeSpec {
        do {
            return try JSONDecoder().decode(OCIRuntimeSpec.self, from: data)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw TaskError.invalidSpec("\(path): bad value at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
        } catch let DecodingError.keyNotFound(key, context) {
            throw TaskError.invalidSpec("\(path): missing \((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))")
        } catch {
            throw TaskError.invalidSpec("\(path) is not a valid OCI runtime spec: \(error)")
        }
    }
}
