// The few containerd task-service messages the shim reads or writes itself
// (containerd/runtime/v2/task/shim.proto). Everything else passes through as opaque bytes.

#if canImport(Glibc)
import Glibc
#endif

/// google.protobuf.Timestamp{seconds = 1 int64, nanos = 2 int32}.
public struct Timestamp: Sendable, Equatable {
    public var seconds: Int64
    public var nanos: Int32

    public init(seconds: Int64, nanos: Int32) {
        self.seconds = seconds
        self.nanos = nanos
    }

    /// Wall-clock time now.
    public static func now() -> Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(seconds: Int64(spec.tv_sec), nanos: Int32(truncatingIfNeeded: spec.tv_nsec))
    }

    public func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        writer.int64(1, seconds)
        writer.int32(2, nanos)
        return writer.bytes
    }

    public init(reader: ProtoReader) throws(ProtoError) {
        self.init(seconds: 0, nanos: 0)
        var reader = reader
        while let field = try reader.next() {
            switch (field.number, field.wireType) {
            case (1, .varint): seconds = field.int64
            case (2, .varint): nanos = field.int32
            default: break
            }
        }
    }
}

/// containerd.types.Mount{type = 1, source = 2, target = 3, options = 4 repeated}.
public struct MountSpec: Sendable, Equatable {
    public var type: String
    public var source: String
    public var target: String
    public var options: [String]

    public init(type: String, source: String, target: String = "", options: [String] = []) {
        self.type = type
        self.source = source
        self.target = target
        self.options = options
    }
}

/// CreateTaskRequest: only id = 1, bundle = 2 and rootfs = 3 matter to the shim.
public struct CreateTaskRequest: Sendable, Equatable {
    public var id = ""
    public var bundle = ""
    public var rootfs: [MountSpec] = []

    public init(id: String, bundle: String, rootfs: [MountSpec]) {
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
    }

    public init(decoding bytes: [UInt8]) throws(ProtoError) {
        var reader = ProtoReader(bytes)
        while let field = try reader.next() {
            switch (field.number, field.wireType) {
            case (1, .lengthDelimited): id = reader.string(field)
            case (2, .lengthDelimited): bundle = reader.string(field)
            case (3, .lengthDelimited):
                var mountReader = reader.message(field)
                var mount = MountSpec(type: "", source: "")
                while let inner = try mountReader.next() {
                    guard inner.wireType == .lengthDelimited else { continue }
                    switch inner.number {
                    case 1: mount.type = mountReader.string(inner)
                    case 2: mount.source = mountReader.string(inner)
                    case 3: mount.target = mountReader.string(inner)
                    case 4: mount.options.append(mountReader.string(inner))
                    default: break
                    }
                }
                rootfs.append(mount)
            default: break
            }
        }
    }

    public func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, id)
        writer.string(2, bundle)
        for mount in rootfs {
            writer.message(3) { m in
                m.string(1, mount.type)
                m.string(2, mount.source)
                m.string(3, mount.target)
                for option in mount.options { m.repeatedString(4, option) }
            }
        }
        return writer.bytes
    }
}

/// The requests shaped {id = 1, exec_id = 2, ...}: State, Start, Delete, Wait, Kill, Pids,
/// Connect, and Shutdown (whose field 2 is `now`, a bool: read it with `flag2`).
public struct TaskIDRequest: Sendable, Equatable {
    public var id = ""
    public var execID = ""
    /// Field 2 when it is a varint (ShutdownRequest.now).
    public var flag2 = false

    public init(id: String, execID: String = "") {
        self.id = id
        self.execID = execID
    }

    public init(decoding bytes: [UInt8]) throws(ProtoError) {
        var reader = ProtoReader(bytes)
        while let field = try reader.next() {
            switch (field.number, field.wireType) {
            case (1, .lengthDelimited): id = reader.string(field)
            case (2, .lengthDelimited): execID = reader.string(field)
            case (2, .varint): flag2 = field.bool
            default: break
            }
        }
    }

    public func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, id)
        writer.string(2, execID)
        return writer.bytes
    }
}

/// How a task ended.
public struct TaskExit: Sendable, Equatable {
    public var status: UInt32
    public var exitedAt: Timestamp

    public init(status: UInt32, exitedAt: Timestamp) {
        self.status = status
        self.exitedAt = exitedAt
    }

    /// What the shim reports when the daemon died under a task: killed (128 + SIGKILL).
    public static func lost(at time: Timestamp = .now()) -> TaskExit {
        TaskExit(status: 137, exitedAt: time)
    }
}

/// containerd.v1.types.Status values used in StateResponse.
public enum TaskStatus {
    public static let created: UInt64 = 1
    public static let running: UInt64 = 2
    public static let stopped: UInt64 = 3
}

public enum TaskResponses {
    /// WaitResponse{exit_status = 1, exited_at = 2}.
    public static func wait(_ exit: TaskExit) -> [UInt8] {
        var writer = ProtoWriter()
        writer.uint32(1, exit.status)
        writer.message(2, exit.exitedAt.encoded())
        return writer.bytes
    }

    /// Reads a WaitResponse; nil when it does not decode.
    public static func decodeWait(_ bytes: [UInt8]) -> TaskExit? {
        var reader = ProtoReader(bytes)
        var exit = TaskExit(status: 0, exitedAt: Timestamp(seconds: 0, nanos: 0))
        do {
            while let field = try reader.next() {
                switch (field.number, field.wireType) {
                case (1, .varint): exit.status = field.uint32
                case (2, .lengthDelimited): exit.exitedAt = try Timestamp(reader: reader.message(field))
                default: break
                }
            }
        } catch {
            return nil
        }
        return exit
    }

    /// DeleteResponse{pid = 1, exit_status = 2, exited_at = 3}.
    public static func delete(pid: UInt32, exit: TaskExit) -> [UInt8] {
        var writer = ProtoWriter()
        writer.uint32(1, pid)
        writer.uint32(2, exit.status)
        writer.message(3, exit.exitedAt.encoded())
        return writer.bytes
    }

    /// StateResponse{id = 1, bundle = 2, pid = 3, status = 4, exit_status = 9, exited_at = 10,
    /// exec_id = 11}.
    public static func state(id: String, bundle: String, pid: UInt32, status: UInt64, exit: TaskExit?) -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, id)
        writer.string(2, bundle)
        writer.uint32(3, pid)
        writer.uint64(4, status)
        if let exit {
            writer.uint32(9, exit.status)
            writer.message(10, exit.exitedAt.encoded())
        }
        return writer.bytes
    }

    /// ConnectResponse{shim_pid = 1, task_pid = 2, version = 3}.
    public static func connect(shimPID: UInt32, taskPID: UInt32, version: String) -> [UInt8] {
        var writer = ProtoWriter()
        writer.uint32(1, shimPID)
        writer.uint32(2, taskPID)
        writer.string(3, version)
        return writer.bytes
    }

    /// PidsResponse{processes = 1 repeated ProcessInfo{pid = 1}}.
    public static func pids(_ pids: [UInt32]) -> [UInt8] {
        var writer = ProtoWriter()
        for pid in pids {
            writer.message(1) { info in info.uint32(1, pid) }
        }
        return writer.bytes
    }
}
