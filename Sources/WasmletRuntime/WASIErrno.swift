import Glibc

/// The WASI preview1 errno values our own host functions return.
enum WASIErrno: UInt32 {
    case success = 0
    case again = 6
    case badf = 8
    case connaborted = 13
    case connrefused = 14
    case connreset = 15
    case fault = 21
    case fbig = 22
    case intr = 27
    case inval = 28
    case io = 29
    case mfile = 33
    case nfile = 41
    case nobufs = 42
    case nomem = 48
    case nosys = 52
    case notconn = 53
    case notdir = 54
    case notsock = 57
    case notsup = 58
    case pipe = 64
    case rofs = 69
    case spipe = 70
    case timedout = 73
    case notcapable = 76

    init(posix: Int32) {
        switch posix {
        case EBADF: self = .badf
        case EFAULT: self = .fault
        case EINVAL: self = .inval
        case EPIPE: self = .pipe
        case EAGAIN: self = .again
        case ECONNABORTED: self = .connaborted
        case ECONNREFUSED: self = .connrefused
        case ECONNRESET: self = .connreset
        case EMFILE: self = .mfile
        case ENFILE: self = .nfile
        case ENOBUFS: self = .nobufs
        case ENOMEM: self = .nomem
        case ENOTCONN: self = .notconn
        case ENOTSOCK: self = .notsock
        case EOPNOTSUPP: self = .notsup
        case ETIMEDOUT: self = .timedout
        case EINTR: self = .intr
        default: self = .io
        }
    }
}
