#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import WasmletShim

@Suite struct RootfsMountsTests {
    let rootfs = "/run/b/rootfs"

    @Test func bindReadWrite() {
        let plan = RootfsMounts.plan(MountSpec(type: "bind", source: "/snap/1/fs", options: ["rbind", "rw"]), rootfs: rootfs)
        #expect(plan.source == "/snap/1/fs")
        #expect(plan.target == rootfs)
        #expect(plan.flags == UInt(MS_BIND) | UInt(MS_REC))
        #expect(plan.data == "")
        #expect(plan.remountFlags == nil)
    }

    @Test func bindReadOnlyNeedsARemount() {
        let plan = RootfsMounts.plan(
            MountSpec(type: "bind", source: "/s", options: ["bind", "ro", "nosuid", "nodev", "rprivate"]), rootfs: rootfs)
        #expect(plan.flags == UInt(MS_BIND))
        #expect(plan.remountFlags == UInt(MS_REMOUNT) | UInt(MS_BIND) | UInt(MS_RDONLY) | UInt(MS_NOSUID) | UInt(MS_NODEV))
        #expect(plan.data == "")
        // "bind" type alone implies MS_BIND.
        #expect(RootfsMounts.plan(MountSpec(type: "bind", source: "/s"), rootfs: rootfs).flags == UInt(MS_BIND))
    }

    @Test func overlayOptionsBecomeData() {
        let plan = RootfsMounts.plan(
            MountSpec(
                type: "overlay", source: "overlay",
                options: ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2", "ro", "noexec"]),
            rootfs: rootfs)
        #expect(plan.fsType == "overlay")
        #expect(plan.flags == UInt(MS_RDONLY) | UInt(MS_NOEXEC))
        #expect(plan.data == "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2")
        #expect(plan.remountFlags == nil)
    }

    @Test func laterOptionsWinAndTargetsAreJoined() {
        let plan = RootfsMounts.plan(
            MountSpec(type: "tmpfs", source: "tmpfs", target: "data", options: ["ro", "rw", "size=1m"]), rootfs: rootfs)
        #expect(plan.flags == 0)
        #expect(plan.data == "size=1m")
        #expect(plan.target == rootfs + "/data")
    }

    @Test func mountFailureMessageNamesTypeAndTarget() {
        let missing = "/nonexistent-\(UInt32.random(in: 0...UInt32.max))"
        let error = RootfsMounts.mountAll(
            [MountSpec(type: "bind", source: missing + "/src", options: ["rbind"])], rootfs: missing + "/rootfs")
        #expect(error?.hasPrefix("mount bind \(missing)/src on \(missing)/rootfs: ") == true)
        // Unmounting what is not mounted is fine.
        #expect(RootfsMounts.unmountAll(missing + "/rootfs") == nil)
    }
}
