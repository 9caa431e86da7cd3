/// The few WASI preview1 errno values our own host functions return.
enum WASIErrno: UInt32 {
    case success = 0
    case badf = 8
    case fault = 21
    case intr = 27
    case inval = 28
    case io = 29
    case pipe = 64
    case rofs = 69
    case notcapable = 76

    init(posix: Int32) {
        switch posix {
        case 9: self = .badf  // EBADF
        case 14: self = .fault  // EFAULT
        case 22: self = .inval  // EINVAL
        case 32: self = .pipe  // EPIPE
        default: self = .io
        }
    }
}
