"""End-to-end tests of the wasmlet runtime (containerd-shim-wasmlet-v1 + wasmletd) driven by
`ctr`, against the containerd and wasmletd that scripts/e2e-containerd.sh started."""
import os
import re
import signal
import subprocess
import threading
import time
import unittest

from lib import (ADDRESS, CAT, ECHO, HELLO, HELLO_TEXT, HTTPD, HTTPD_TEXT, MEMBOMB, NS, RUNTIME, SLEEPER,
                 SNAPSHOTTER, WASMLET_SOCKET, WORK, Wasmletd, bundle_mounts, cleanup_namespace, containers,
                 ctr, ctr_run, image, images, import_image, run, shim_pids, tasks, unreadable_archives,
                 wait_for, wasi_hello)


class CtrTestCase(unittest.TestCase):
    def setUp(self):
        Wasmletd.ensure_running()
        self.shims_before = shim_pids()

    def tearDown(self):
        left = cleanup_namespace()
        if left:
            print(f"\n    (tearDown removed leftovers: {', '.join(left)})", flush=True)

    # ---- assertions shared by the tests

    def assertRan(self, r, code=0, text=None):
        self.assertFalse(r.timed_out, f"ctr timed out\n{r}")
        self.assertEqual(r.rc, code, f"unexpected exit code\n{r}")
        if text is not None:
            self.assertIn(text, r.out, f"guest output missing\n{r}")

    def assertNoLeftovers(self, prefix, shim_grace=5.0):
        """No task or container whose id starts with prefix, no bundle mount of one, and the
        wasmlet shims back to what ran before the test (within shim_grace seconds)."""
        left_tasks = [t for t in tasks() if t.startswith(prefix)]
        self.assertEqual(left_tasks, [], "tasks left behind")
        left_containers = [c for c in containers() if c.startswith(prefix)]
        self.assertEqual(left_containers, [], "containers left behind")
        mounts = [m for m in bundle_mounts() if f"/{prefix}" in m]
        self.assertEqual(mounts, [], "bundle mounts left behind")
        extra = wait_for(lambda: set(shim_pids()) <= set(self.shims_before) or None, shim_grace)
        self.assertTrue(extra, f"wasmlet shims still running {shim_grace} s later: "
                               f"{sorted(set(shim_pids()) - set(self.shims_before))} "
                               f"(before the test: {self.shims_before})")

    def wait_status(self, cid, status, timeout):
        got = wait_for(lambda: tasks().get(cid, ("", ""))[1] == status, timeout, interval=0.05)
        self.assertTrue(got, f"task {cid} not {status} within {timeout} s: ctr task ls says "
                             f"{tasks().get(cid)}")

    def delete_task(self, cid):
        """`ctr task delete`, returning the exit status it reports (ctr 1.6 exits with a
        non-zero task exit status as its own exit code)."""
        r = ctr("task", "delete", cid, timeout=20)
        self.assertFalse(r.timed_out, f"ctr task delete hung\n{r}")
        m = re.search(r"exit code (\d+)", r.err + r.out)
        code = int(m.group(1)) if m else r.rc
        still = tasks().get(cid)
        self.assertIsNone(still, f"task {cid} still listed after delete: {still}\n{r}")
        return code, r

    def delete_container(self, cid):
        r = ctr("container", "delete", cid, timeout=20)
        self.assertEqual(r.rc, 0, f"ctr container delete failed\n{r}")


class T0Images(CtrTestCase):
    def test_project_archives(self):
        """Every archive scripts/build-example-images.sh wrote is a readable OCI archive that
        `ctr image import` accepts (into a scratch namespace)."""
        img_dir = os.path.join(WORK, "images")
        archives = sorted(f for f in os.listdir(img_dir) if f.endswith(".tar"))
        if not archives:
            self.skipTest("no scripts/build-example-images.sh output (images packed by the tests)")
        images()
        self.assertEqual(unreadable_archives, {}, "archives that are not valid tar/OCI archives")
        failed = []
        for f in archives:
            path = os.path.join(img_dir, f)
            r = ctr("image", "import", "--all-platforms", "--snapshotter", SNAPSHOTTER, path,
                    ns="e2e-images", timeout=60)
            if r.rc != 0:
                failed.append(str(r))
        self.assertEqual(failed, [], "ctr image import failed")


class T1Basic(CtrTestCase):
    def test_hello(self):
        """ctr run --rm of the hello image prints the guest's line and exits 0."""
        import_image(image(HELLO))
        r = ctr_run(HELLO, "t1-hello")
        self.assertRan(r, 0, HELLO_TEXT)
        self.assertNoLeftovers("t1-")

    def test_hello_wasi_platform(self):
        """The wasip1/wasm-platform image, imported with --all-platforms, run with --platform."""
        img = wasi_hello()
        import_image(img)
        r = ctr_run(img.name, "t1-wasi", flags=["--platform", img.platform])
        self.assertRan(r, 0, HELLO_TEXT)
        self.assertNoLeftovers("t1-")

    def test_exit_code(self):
        """A guest's non-zero exit code (echo --exit 7) is ctr run's exit code; args reach it."""
        img = image(ECHO)
        import_image(img)
        r = ctr_run(ECHO, "t1-exit", img.module, "one", "--exit", "7")
        self.assertRan(r, 7, "argv[1]=one")
        self.assertNoLeftovers("t1-")


    def test_stdin(self):
        """stdin reaches the guest through its FIFO, and its end is end-of-file: cat copies a
        piped line and exits 0; with a stdin that ends, empty, while the task runs, it exits 0
        (ctr then closes its writer and sends CloseIO, which the shim relays to wasmletd).
        Not tested: `ctr run cat </dev/null`, where ctr 1.6 may lose its own CloseIO (its input
        ends before the task exists; see the README) and the guest waits, as a runc one would."""
        import_image(image(CAT))
        r = ctr_run(CAT, "t1-cat-line", input="a line through the stdin FIFO\n", timeout=30)
        self.assertRan(r, 0, "a line through the stdin FIFO")
        argv = ["ctr", "-a", ADDRESS, "-n", NS, "run", "--rm", "--snapshotter", SNAPSHOTTER,
                "--fifo-dir", os.path.join(WORK, "fifo"), "--runtime", RUNTIME, CAT, "t1-cat-empty"]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.wait_status("t1-cat-empty", "RUNNING", 30)
            out, err = p.communicate(input=b"", timeout=30)  # closes ctr's stdin, empty
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail(f"cat did not end after its stdin closed\nstdout {out!r}\nstderr {err!r}")
        self.assertEqual((p.returncode, out), (0, b""), f"stderr {err!r}")
        self.assertNoLeftovers("t1-")


class T2LongRunning(CtrTestCase):
    def test_kill_sleeper(self):
        """A detached sleeper is RUNNING; SIGTERM ends it within 1 s with status 143; delete
        leaves no mount and no shim."""
        import_image(image(SLEEPER))
        r = ctr_run(SLEEPER, "t2", detach=True)
        self.assertRan(r, 0)
        self.wait_status("t2", "RUNNING", 5)
        pid = tasks()["t2"][0]
        self.assertNotIn(pid, ("", "0"), "a running task needs a non-zero pid")
        ps = ctr("task", "ps", "t2")
        self.assertEqual(ps.rc, 0, f"ctr task ps failed\n{ps}")
        self.assertIn(pid, ps.out, f"ctr task ps does not list the task's pid {pid}\n{ps}")
        self.assertTrue(bundle_mounts("t2"), "the running task's rootfs is not mounted")
        self.assertGreater(len(shim_pids()), len(self.shims_before), "no wasmlet shim serves t2")

        start = time.monotonic()
        k = ctr("task", "kill", "t2")  # SIGTERM
        self.assertEqual(k.rc, 0, f"ctr task kill failed\n{k}")
        self.wait_status("t2", "STOPPED", 1.0)
        print(f"\n    SIGTERM -> STOPPED in {time.monotonic() - start:.3f} s", end="", flush=True)
        code, d = self.delete_task("t2")
        self.assertEqual(code, 128 + signal.SIGTERM, f"exit status after SIGTERM\n{d}")
        self.delete_container("t2")
        self.assertEqual(bundle_mounts("t2"), [], "rootfs of t2 still mounted")
        self.assertNoLeftovers("t2")


class T3Memory(CtrTestCase):
    @staticmethod
    def allocated(r):
        m = re.search(r"allocated (\d+) MiB", r.out)
        return int(m.group(1)) if m else None

    def test_memory_limit(self):
        """membomb mallocs 1 MiB chunks until malloc fails, prints `allocated N MiB`, exits 3.
        Under --memory-limit 16 MiB it stops below 16; under 64 MiB it gets further (below 64);
        without a limit the daemon's default cap (128 MiB) stops it."""
        import_image(image(MEMBOMB))
        results = {}
        for label, flags in (("16MiB", ["--memory-limit", str(16 << 20)]),
                             ("64MiB", ["--memory-limit", str(64 << 20)]),
                             ("none", [])):
            r = ctr_run(MEMBOMB, f"t3-{label.lower()}", flags=flags, timeout=120)
            self.assertRan(r, 3)  # malloc failed: the cap held, the guest saw it
            results[label] = self.allocated(r)
            self.assertIsNotNone(results[label], f"no 'allocated N MiB' line\n{r}")
        print(f"\n    allocated MiB before malloc failed: {results}", end="", flush=True)
        self.assertLess(results["16MiB"], 16)
        self.assertGreaterEqual(results["64MiB"], 16)
        self.assertLess(results["64MiB"], 64)
        self.assertGreater(results["none"], results["64MiB"])
        self.assertNoLeftovers("t3-")


class T4Concurrency(CtrTestCase):
    N = 50

    def test_parallel_hello(self):
        """50 ctr run --rm of hello at once: all exit 0 with the output; nothing left."""
        import_image(image(HELLO))
        results = [None] * self.N

        def one(i):
            results[i] = ctr_run(HELLO, f"t4-{i:02d}", timeout=240)

        start = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(self.N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        bad = [r for r in results if r.rc != 0 or HELLO_TEXT not in r.out]
        print(f"\n    {self.N} runs in {wall:.1f} s, {len(bad)} failed", end="", flush=True)
        self.assertEqual(bad, [], "failed runs:\n" + "\n".join(str(r) for r in bad[:5]))
        self.assertNoLeftovers("t4-", shim_grace=15)


class T5DaemonLoss(CtrTestCase):
    def test_kill9_daemon(self):
        """kill -9 of wasmletd under a running sleeper: the task is reported STOPPED with 137
        within a few seconds, delete works, and after a restart new runs work."""
        import_image(image(SLEEPER))
        import_image(image(HELLO))
        self.assertRan(ctr_run(SLEEPER, "t5", detach=True), 0)
        self.wait_status("t5", "RUNNING", 5)
        start = time.monotonic()
        Wasmletd.kill9()
        self.wait_status("t5", "STOPPED", 5)
        print(f"\n    daemon SIGKILL -> STOPPED in {time.monotonic() - start:.2f} s", end="", flush=True)
        code, d = self.delete_task("t5")
        self.assertEqual(code, 137, f"exit status after the daemon died\n{d}")
        self.delete_container("t5")
        Wasmletd.ensure_running()
        self.assertRan(ctr_run(HELLO, "t5-after"), 0, HELLO_TEXT)
        self.assertNoLeftovers("t5")


class T6Errors(CtrTestCase):
    def test_missing_module(self):
        """A module path that is not in the image fails ctr run with a message naming it."""
        import_image(image(HELLO))
        r = ctr_run(HELLO, "t6-nope", "/nope.wasm")
        self.assertFalse(r.timed_out, f"ctr run hung\n{r}")
        self.assertNotEqual(r.rc, 0, f"ctr run of a missing module succeeded\n{r}")
        self.assertIn("nope.wasm", r.out + r.err, f"the error does not name the module\n{r}")
        print(f"\n    ctr says: {r.err.strip()[-300:]}", end="", flush=True)
        self.assertNoLeftovers("t6-")

    def test_daemon_not_running(self):
        """With wasmletd stopped, ctr run fails saying wasmletd is not running; after a restart
        runs work again."""
        import_image(image(HELLO))
        Wasmletd.stop()
        try:
            r = ctr_run(HELLO, "t6-down")
            self.assertFalse(r.timed_out, f"ctr run hung with wasmletd down\n{r}")
            self.assertNotEqual(r.rc, 0, f"ctr run succeeded without wasmletd\n{r}")
            msg = (r.out + r.err).lower()
            print(f"\n    ctr says: {r.err.strip()[-300:]}", end="", flush=True)
            self.assertIn("wasmletd", msg, f"the error does not name wasmletd\n{r}")
            self.assertTrue("not running" in msg or WASMLET_SOCKET.lower() in msg,
                            f"the error does not say wasmletd is not running\n{r}")
        finally:
            Wasmletd.ensure_running()
        self.assertRan(ctr_run(HELLO, "t6-again"), 0, HELLO_TEXT)
        self.assertNoLeftovers("t6-")


def socket_inodes(pid):
    """The socket inodes among process pid's descriptors."""
    found = set()
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for entry in entries:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target)
    return found


class T8Listeners(CtrTestCase):
    """wasmlet.dev/listen under the real containerd: the shim binds in the container's network
    namespace (a fresh one per test, made here with `ip netns`), wasmletd hands the socket to
    the guest, and a client inside that namespace gets an answer."""

    def setUp(self):
        super().setUp()
        self.netns = f"wasmlet-e2e-{os.getpid()}"
        self.netns_path = f"/var/run/netns/{self.netns}"
        r = run(["ip", "netns", "add", self.netns])
        self.assertEqual(r.rc, 0, f"cannot create a network namespace\n{r}")
        r = run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self.assertEqual(r.rc, 0, f"cannot bring lo up in {self.netns}\n{r}")
        import_image(image(HTTPD))

    def tearDown(self):
        super().tearDown()
        r = run(["ip", "netns", "delete", self.netns])
        self.assertEqual(r.rc, 0, f"cannot delete {self.netns}\n{r}")
        self.assertFalse(os.path.exists(self.netns_path), f"{self.netns_path} still exists")

    def in_netns(self, *argv, timeout=15):
        return run(["ip", "netns", "exec", self.netns, *argv], timeout=timeout)

    def curl(self, path="/"):
        return self.in_netns("curl", "-sS", "--max-time", "10", f"http://127.0.0.1:8080{path}")

    def listening(self, port):
        r = self.in_netns("ss", "-Htln", f"sport = :{port}")
        return r.rc == 0 and r.out.strip() != ""

    def listener_inodes(self, port):
        """`socket:[inode]` of every TCP socket listening on port in the namespace (read from
        its /proc/net/tcp{,6}, which show the reader's namespace)."""
        r = self.in_netns("cat", "/proc/net/tcp", "/proc/net/tcp6")
        found = set()
        for line in r.out.splitlines():
            fields = line.split()
            if len(fields) > 9 and fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                found.add(f"socket:[{fields[9]}]")
        return found

    def assertDaemonHoldsNone(self, inodes):
        held = wait_for(lambda: not (socket_inodes(Wasmletd.pid()) & inodes) or None, 5)
        self.assertTrue(held, f"wasmletd still holds {sorted(socket_inodes(Wasmletd.pid()) & inodes)}")

    def run_httpd(self, cid, listen="8080", rm=False):
        flags = ["--with-ns", f"network:{self.netns_path}", "--annotation", f"wasmlet.dev/listen={listen}"]
        return ctr_run(HTTPD, cid, flags=flags, detach=not rm)

    def test_httpd_serves_in_the_network_namespace(self):
        """httpd with wasmlet.dev/listen=8080 in a network namespace of its own answers curl
        there; the host namespace has no such listener; after kill and delete the port is closed
        and wasmletd holds no socket more than before."""
        r = self.run_httpd("t8-httpd")
        self.assertRan(r, 0)
        self.wait_status("t8-httpd", "RUNNING", 10)
        for _ in range(3):
            got = self.curl()
            self.assertEqual(got.rc, 0, f"curl in {self.netns} failed\n{got}")
            self.assertIn(HTTPD_TEXT, got.out, f"unexpected answer\n{got}")
        self.assertNotIn(HTTPD_TEXT, run(["curl", "-sS", "--max-time", "3", "http://127.0.0.1:8080/"]).out,
                         "the host namespace answered on 8080")
        # The one listener in the namespace is wasmletd's (the shim kept no copy).
        listener = self.listener_inodes(8080)
        self.assertEqual(len(listener), 1, f"listeners on 8080 in the namespace: {listener}")
        self.assertTrue(listener <= socket_inodes(Wasmletd.pid()), "wasmletd does not hold the listener")
        info = ctr("task", "ls")
        print(f"\n    curl in {self.netns}: {got.out.strip()!r}", end="", flush=True)
        r = ctr("task", "kill", "-s", "SIGKILL", "t8-httpd")
        self.assertEqual(r.rc, 0, f"kill failed\n{r}\n{info}")
        self.wait_status("t8-httpd", "STOPPED", 10)
        self.assertFalse(self.listening(8080), "8080 still listening in the namespace after the kill")
        refused = self.curl()
        # curl's 7: could not connect (refused: nothing listens in the namespace any more).
        self.assertEqual(refused.rc, 7, f"curl did not fail to connect after the kill\n{refused}")
        code, _ = self.delete_task("t8-httpd")
        self.assertEqual(code, 137)
        self.delete_container("t8-httpd")
        self.assertNoLeftovers("t8-")
        self.assertDaemonHoldsNone(listener)

    def test_port_in_use_and_malformed_annotation_fail_create(self):
        """A port already taken in the namespace, and a malformed annotation, fail ctr run with
        a clear error and leave no task, container, mount, shim or socket behind."""
        r = self.run_httpd("t8-first")
        self.assertRan(r, 0)
        self.wait_status("t8-first", "RUNNING", 10)
        busy = self.run_httpd("t8-busy", rm=True)
        self.assertFalse(busy.timed_out, f"ctr run hung\n{busy}")
        self.assertNotEqual(busy.rc, 0, f"a second listener on 8080 was created\n{busy}")
        self.assertIn("address already in use", (busy.out + busy.err).lower(), f"unclear error\n{busy}")
        print(f"\n    ctr says: {busy.err.strip()[-200:]}", end="", flush=True)
        self.assertIn(HTTPD_TEXT, self.curl().out, "the first container stopped serving")
        listener = self.listener_inodes(8080)
        self.assertEqual(len(listener), 1, f"listeners on 8080 in the namespace: {listener}")
        bad = self.run_httpd("t8-bad", listen="80x80", rm=True)
        self.assertFalse(bad.timed_out, f"ctr run hung\n{bad}")
        self.assertNotEqual(bad.rc, 0, f"a malformed annotation was accepted\n{bad}")
        self.assertIn("wasmlet.dev/listen", bad.out + bad.err, f"the error does not name the annotation\n{bad}")
        print(f"\n    ctr says: {bad.err.strip()[-200:]}", end="", flush=True)
        self.assertEqual([t for t in tasks() if t in ("t8-busy", "t8-bad")], [])
        self.assertEqual([c for c in containers() if c in ("t8-busy", "t8-bad")], [])
        ctr("task", "kill", "-s", "SIGKILL", "t8-first")
        self.wait_status("t8-first", "STOPPED", 10)
        self.delete_task("t8-first")
        self.delete_container("t8-first")
        self.assertNoLeftovers("t8-")
        self.assertFalse(self.listening(8080))
        self.assertDaemonHoldsNone(listener)


ORDER = [T0Images, T1Basic, T2LongRunning, T3Memory, T4Concurrency, T5DaemonLoss, T6Errors, T8Listeners]
