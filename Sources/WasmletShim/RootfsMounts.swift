// Mounting the task's root filesystem onto <bundle>/rootfs, as containerd expects every shim to
// do at Create, and removing it again at Delete. containerd hands the mounts over as
// Mount{type, source, options}: a snapshot is either a bind mount (`native` snapshotter:
// options "rbind,rw") or an overlay ("lowerdir=...,upperdir=...,workdir=...").

#if canImport(Glibc)
import Glibc
#endif

/// What one mount(2) call (plus an optional remount) needs, derived from a MountSpec.
public struct MountPlan: Sendable, Equatable {
    public var source: String
    public var target: String
    public var fsType: String
    public var flags: UInt
    /// Options that are not flags, comma-joined (e.g. overlay's lowerdir=...).
    public var data: String
    /// For bind mounts with flags such as ro/nosuid: a bind mount ignores them, so a second
    /// mount(MS_REMOUNT | MS_BIND | flags) applies them. nil when not needed.
    public var remountFlags: UInt?
}

public enum RootfsMounts {
    /// Options that map to mount flags: (flag, set? false means the option clears it).
    static let flagOptions: [String: (flag: UInt, set: Bool)] = [
        "ro": (UInt(MS_RDONLY), true), "rw": (UInt(MS_RDONLY), false),
        "bind": (UInt(MS_BIND), true), "rbind": (UInt(MS_BIND) | UInt(MS_REC), true),
        "nosuid": (UInt(MS_NOSUID), true), "suid": (UInt(MS_NOSUID), false),
        "nodev": (UInt(MS_NODEV), true), "dev": (UInt(MS_NODEV), false),
        "noexec": (UInt(MS_NOEXEC), true), "exec": (UInt(MS_NOEXEC), false),
        "sync": (UInt(MS_SYNCHRONOUS), true), "async": (UInt(MS_SYNCHRONOUS), false),
        "dirsync": (UInt(MS_DIRSYNC), true),
        "remount": (UInt(MS_REMOUNT), true),
        "mand": (UInt(MS_MANDLOCK), true), "nomand": (UInt(MS_MANDLOCK), false),
        "noatime": (UInt(MS_NOATIME), true), "atime": (UInt(MS_NOATIME), false),
        "nodiratime": (UInt(MS_NODIRATIME), true), "diratime": (UInt(MS_NODIRATIME), false),
        "relatime": (UInt(MS_RELATIME), true), "norelatime": (UInt(MS_RELATIME), false),
        "strictatime": (UInt(MS_STRICTATIME), true), "nostrictatime": (UInt(MS_STRICTATIME), false),
    ]
    /// Propagation options: runc applies them with separate calls; for a private rootfs mount
    /// they do not matter, so they are dropped rather than passed to the filesystem as data.
    static let ignoredOptions: Set<String> = [
        "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable", "defaults",
    ]

    public static func plan(_ mount: MountSpec, rootfs: String) -> MountPlan {
        var flags: UInt = 0
        var data = [String]()
        for option in mount.options {
            if let entry = flagOptions[option] {
                if entry.set { flags |= entry.flag } else { flags &= ~entry.flag }
            } else if !ignoredOptions.contains(option) {
                data.append(option)
            }
        }
        let bindFlags = UInt(MS_BIND) | UInt(MS_REC)
        if mount.type == "bind" { flags |= UInt(MS_BIND) }
        var remount: UInt?
        if flags & UInt(MS_BIND) != 0 {
            let extra = flags & ~bindFlags
            if extra != 0 { remount = UInt(MS_REMOUNT) | UInt(MS_BIND) | extra }
            flags &= bindFlags  // the first call only binds
        }
        var target = rootfs
        if !mount.target.isEmpty && mount.target != "/" {
            target += mount.target.hasPrefix("/") ? mount.target : "/" + mount.target
        }
        return MountPlan(
            source: mount.source, target: target, fsType: mount.type.isEmpty ? "none" : mount.type,
            flags: flags, data: data.joined(separator: ","), remountFlags: remount)
    }

    /// Mounts every spec in order. On failure, undoes what was mounted and returns the message
    /// for containerd, e.g. "mount overlay on /run/.../rootfs: Permission denied".
    public static func mountAll(_ mounts: [MountSpec], rootfs: String) -> String? {
        var done = 0
        for mount in mounts {
            let plan = plan(mount, rootfs: rootfs)
            if let error = perform(plan) {
                for _ in 0..<done { unmountOnce(rootfs) }
                return "mount \(describe(mount)) on \(plan.target): \(error)"
            }
            done += 1
        }
        return nil
    }

    /// "overlay", or "bind /snapshots/1/fs" when the source says more than the type.
    static func describe(_ mount: MountSpec) -> String {
        let type = mount.type.isEmpty ? "(no type)" : mount.type
        return mount.source.isEmpty || mount.source == mount.type ? type : type + " " + mount.source
    }

    static func perform(_ plan: MountPlan) -> SystemError? {
        let result = plan.data.withCString { data in
            mount(plan.source, plan.target, plan.fsType, plan.flags, plan.data.isEmpty ? nil : UnsafeRawPointer(data))
        }
        guard result == 0 else { return .last }
        if let remount = plan.remountFlags {
            guard mount("", plan.target, nil, remount, nil) == 0 else {
                let error = SystemError.last
                _ = umount2(plan.target, Int32(MNT_DETACH))
                return error
            }
        }
        return nil
    }

    /// Removes everything mounted on `rootfs` (stacked mounts too). Nothing mounted (EINVAL) or
    /// no directory (ENOENT) is not an error. Returns the error text for anything else.
    @discardableResult
    public static func unmountAll(_ rootfs: String) -> String? {
        for _ in 0..<32 {  // bounded: a mount that keeps reappearing must not loop forever
            if umount2(rootfs, Int32(MNT_DETACH)) != 0 {
                let error = SystemError.last
                if error.code == EINVAL || error.code == ENOENT { return nil }
                return "unmount \(rootfs): \(error)"
            }
        }
        return nil
    }

    private static func unmountOnce(_ rootfs: String) {
        _ = umount2(rootfs, Int32(MNT_DETACH))
    }
}
