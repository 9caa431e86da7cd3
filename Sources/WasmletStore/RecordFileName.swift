import Crypto

/// Turns a namespace or id into one safe file-name component.
///
/// The runtime forbids only '/' and NUL in names, so "..", ".hidden", names with spaces or
/// control characters, and 255-byte names are all legal ids. Every byte outside [A-Za-z0-9_-]
/// (and '.') is percent-encoded, a leading '.' too, so no name can walk out of the directory
/// or hide; a name whose encoding would exceed the file-name limit is replaced by a digest (the
/// record inside still carries the real name, so nothing is lost).
enum RecordFileName {
    static let maxComponentBytes = 200

    static func component(_ name: String) -> String {
        var encoded = ""
        for (index, byte) in name.utf8.enumerated() {
            let isSafe =
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x5F || byte == 0x2D || (byte == 0x2E && index > 0)
            if isSafe {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += "%" + hex(byte)
            }
        }
        if encoded.isEmpty { return "%" }
        if encoded.utf8.count > maxComponentBytes {
            return "sha256-" + SHA256.hash(data: Array(name.utf8)).map(hex).joined()
        }
        return encoded
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}
