import Foundation
import Glibc
import WasmletRuntime

/// The JSON of a `PersistedInstance`, written by hand: the same document `JSONEncoder` (with
/// sorted keys and `iso8601WithFractionalSeconds` dates) makes and `InstanceStore` reads back with
/// `JSONDecoder`, at a small fraction of the cost (the encoder was about a tenth of the daemon's
/// CPU time in a create/start/delete loop). Keys are sorted, absent optionals are left out, dates
/// are ISO 8601 UTC with milliseconds.
enum RecordJSON {
    static func encode(_ record: PersistedInstance) -> [UInt8] {
        var out = JSONBytes()
        out.bytes.reserveCapacity(768)
        out.open()
        out.key("args")
        out.array(record.args) { $0.string($1) }
        out.key("createdAt")
        out.date(record.createdAt)
        if let cwd = record.cwd {
            out.key("cwd")
            out.string(cwd)
        }
        out.key("environment")
        out.stringMap(record.environment)
        if let exit = record.exit {
            out.key("exit")
            encode(exit, to: &out)
        }
        out.key("id")
        out.string(record.id)
        out.key("labels")
        out.stringMap(record.labels)
        out.key("limits")
        out.open()
        if let fuel = record.limits.fuel {
            out.key("fuel")
            out.uint(fuel)
        }
        if let memory = record.limits.memoryBytes {
            out.key("memoryBytes")
            out.uint(memory)
        }
        if let stack = record.limits.stackBytes {
            out.key("stackBytes")
            out.uint(stack)
        }
        if let timeout = record.limits.timeoutMilliseconds {
            out.key("timeoutMilliseconds")
            out.uint(timeout)
        }
        out.close()
        out.key("memoryCapBytes")
        out.uint(record.memoryCapBytes)
        out.key("moduleDigest")
        out.string(record.moduleDigest)
        if let modulePath = record.modulePath {
            out.key("modulePath")
            out.string(modulePath)
        }
        out.key("namespace")
        out.string(record.namespace)
        out.key("preopens")
        out.array(record.preopens) { out, preopen in
            out.open()
            out.key("guestPath")
            out.string(preopen.guestPath)
            out.key("hostPath")
            out.string(preopen.hostPath)
            out.key("readOnly")
            out.bool(preopen.readOnly)
            out.close()
        }
        out.key("serial")
        out.uint(UInt64(record.serial))
        if let startedAt = record.startedAt {
            out.key("startedAt")
            out.date(startedAt)
        }
        out.key("state")
        out.string(record.state.rawValue)
        out.key("stdio")
        out.open()
        if let stderr = record.stdio.stderr {
            out.key("stderr")
            out.string(stderr)
        }
        if let stdin = record.stdio.stdin {
            out.key("stdin")
            out.string(stdin)
        }
        if let stdout = record.stdio.stdout {
            out.key("stdout")
            out.string(stdout)
        }
        out.close()
        out.key("version")
        out.int(Int64(record.version))
        out.close()
        return out.bytes
    }

    private static func encode(_ exit: ExitRecord, to out: inout JSONBytes) {
        out.open()
        out.key("code")
        out.int(Int64(exit.code))
        out.key("cpuTimeNanoseconds")
        out.uint(exit.cpuTimeNanoseconds)
        out.key("exitedAt")
        out.date(exit.exitedAt)
        out.key("fuelConsumed")
        out.uint(exit.fuelConsumed)
        out.key("memoryLimitHit")
        out.bool(exit.memoryLimitHit)
        out.key("message")
        out.string(exit.message)
        out.key("peakMemoryBytes")
        out.uint(exit.peakMemoryBytes)
        out.key("reason")
        out.string(exit.reason.rawValue)
        out.key("signal")
        out.int(Int64(exit.signal))
        if let startedAt = exit.startedAt {
            out.key("startedAt")
            out.date(startedAt)
        }
        out.close()
    }

    /// `{"id":…,"namespace":…}`: what a journal's removal entry names.
    static func encode(_ key: InstanceKey) -> [UInt8] {
        var out = JSONBytes()
        out.open()
        out.key("id")
        out.string(key.id)
        out.key("namespace")
        out.string(key.namespace)
        out.close()
        return out.bytes
    }
}

/// A compact JSON writer into bytes. Members are separated automatically.
struct JSONBytes {
    var bytes: [UInt8] = []
    /// Whether the next member or element of the innermost container needs a comma first.
    private var needsComma = false

    mutating func open() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    mutating func close() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// Writes `"name":`.
    mutating func key(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    mutating func array<Element>(_ elements: [Element], _ body: (inout JSONBytes, Element) -> Void) {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
        for element in elements { body(&self, element) }
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// An object of string values, keys sorted.
    mutating func stringMap(_ map: [String: String]) {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
        for (name, value) in map.sorted(by: { $0.key < $1.key }) {
            string(name)
            bytes.append(UInt8(ascii: ":"))
            needsComma = false
            string(value)
        }
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    mutating func bool(_ value: Bool) {
        separate()
        if value {
            bytes.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
        } else {
            bytes.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65])
        }
        needsComma = true
    }

    mutating func uint(_ value: UInt64) {
        separate()
        appendDigits(value)
        needsComma = true
    }

    mutating func int(_ value: Int64) {
        separate()
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        appendDigits(value.magnitude)
        needsComma = true
    }

    mutating func string(_ value: String) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
                case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: bytes.append(contentsOf: [0x5C, 0x6E])
                case 0x0D: bytes.append(contentsOf: [0x5C, 0x72])
                case 0x09: bytes.append(contentsOf: [0x5C, 0x74])
                case 0..<0x20:
                    let digits: [UInt8] = Array("0123456789abcdef".utf8)
                    bytes.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, digits[Int(byte >> 4)], digits[Int(byte & 15)]])
                default: bytes.append(byte)
                }
            }
        }
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    /// "2026-11-27T01:20:00.123Z": UTC, milliseconds truncated, as `Date.ISO8601FormatStyle`
    /// with fractional seconds writes it.
    mutating func date(_ date: Date) {
        separate()
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let fraction = Int(milliseconds - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        bytes.append(UInt8(ascii: "\""))
        pad(Int(parts.tm_year) + 1900, 4)
        bytes.append(UInt8(ascii: "-"))
        pad(Int(parts.tm_mon) + 1, 2)
        bytes.append(UInt8(ascii: "-"))
        pad(Int(parts.tm_mday), 2)
        bytes.append(UInt8(ascii: "T"))
        pad(Int(parts.tm_hour), 2)
        bytes.append(UInt8(ascii: ":"))
        pad(Int(parts.tm_min), 2)
        bytes.append(UInt8(ascii: ":"))
        pad(Int(parts.tm_sec), 2)
        bytes.append(UInt8(ascii: "."))
        pad(fraction, 3)
        bytes.append(UInt8(ascii: "Z"))
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    private mutating func pad(_ value: Int, _ width: Int) {
        var digits: [UInt8] = []
        var rest = max(0, value)
        repeat {
            digits.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        if digits.count < width { bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - digits.count)) }
        bytes.append(contentsOf: digits.reversed())
    }

    private mutating func appendDigits(_ value: UInt64) {
        if value < 10 {
            bytes.append(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var buffer: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for 20 digits
        withUnsafeMutableBytes(of: &buffer) { raw in
            var rest = value
            var index = raw.count
            while rest > 0 {
                index -= 1
                raw[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            bytes.append(contentsOf: raw[index...])
        }
    }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }
}
