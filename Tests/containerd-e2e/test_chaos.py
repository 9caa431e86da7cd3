"""Chaos under the real containerd: wasmletd killed with SIGKILL again and again while 50
containers run and more are being created, and shims killed too. Bounded (CHAOS_ROUNDS rounds,
default 20) and seeded (CHAOS_SEED, default 1), so a failure can be replayed; it prints what it
did."""
import os
import random
import re
import signal
import threading
import time

from lib import (HELLO, HELLO_TEXT, SLEEPER, WORK, Wasmletd, bundle_mounts, containers, ctr, ctr_run,
                 image, import_image, shim_pids, tasks, wait_for, wasmletctl)
from test_ctr import CtrTestCase


# libdispatch's worker threads ("com.apple.root.default-qos", ...; the kernel keeps the last 15
# characters of a name) come and go as the library decides: timers such as the 60 s tombstones
# of deleted records wake one, and it lingers a while. Their number is not ours to hold to a
# baseline, so it is only bounded; a worker leaked per instance would pass that bound many times.
DISPATCH_WORKERS_MAX = 16


def daemon_thread_names():
    pid = Wasmletd.pid()
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            names.append(open(f"/proc/{pid}/task/{task}/comm").read().strip())
        except OSError:
            pass  # the thread ended meanwhile
    return sorted(names)


def daemon_resources():
    """The running wasmletd's descriptors, its own threads (all but libdispatch's workers and
    parked guest threads), its parked guest threads, and libdispatch's workers."""
    pid = Wasmletd.pid()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    own = guest = dispatch = 0
    for name in daemon_thread_names():
        if "qos" in name:
            dispatch += 1
        elif name == "wasmlet-guest":
            guest += 1
        else:
            own += 1
    return {"fds": fds, "threads": own, "guest threads": guest, "dispatch workers": dispatch}


def serving_shims():
    """The run's serving shims that are at least a second old: `start`'s forked servers,
    which lead a session of their own. Not the short-lived `start` and `delete` invocations
    containerd runs, nor a server in its first moments, before containerd has connected to it:
    a shim killed there leaves its socket file, and containerd runs no cleanup that would
    remove it (no `delete` of a shim it never reached). That window is not what this test aims
    at; it is listed as a known gap (README, "Faults survived")."""
    uptime = float(open("/proc/uptime").read().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    out = []
    for pid in shim_pids():
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        # After the command: state (0), ppid, pgrp, session (3), ..., starttime (19).
        if len(fields) > 19 and fields[3] == str(pid) and uptime - int(fields[19]) / ticks >= 1.0:
            out.append(pid)
    return out


def exit_code(cid):
    """`ctr task delete` of a stopped task: the exit status it reports (None if it failed)."""
    r = ctr("task", "delete", cid, timeout=30)
    m = re.search(r"exit code (\d+)", r.err + r.out)
    if m:
        return int(m.group(1))
    return r.rc if r.rc == 0 else None


class T12Chaos(CtrTestCase):
    ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "20"))
    RUNNING = 50

    def test_daemon_and_shim_kills(self):
        """Each round: top up to 50 running containers (sleepers; every fifth one sleeps 0.3 s and
        exits 0 by itself), and once a random number of those creates has returned (none, some
        or all), SIGKILL wasmletd, SIGKILL a random serving shim every other round, and restart wasmletd. Then every task
        must settle (none stuck CREATED or UNKNOWN), and each stopped one report 137 (its daemon
        or shim was lost, or a kill) or 0 (it finished). At the end nothing is left: no task,
        container, rootfs mount, FIFO, shim, shim socket or daemon record, and the daemon's
        descriptors and threads are those of a fresh daemon."""
        rng = random.Random(int(os.environ.get("CHAOS_SEED", "1")))
        sleeper = image(SLEEPER)
        import_image(sleeper)
        import_image(image(HELLO))
        Wasmletd.kill9()
        Wasmletd.ensure_running()
        self.assertRan(ctr_run(HELLO, "t10-warm"), 0, HELLO_TEXT)
        baseline = daemon_resources()
        baseline_names = daemon_thread_names()

        serial = 0
        codes = {}
        outcomes = {"created": 0, "refused": 0, "daemon_kills": 0, "shim_kills": 0}
        hung = []
        lock = threading.Lock()

        def create(cid, args):
            r = ctr_run(SLEEPER, cid, *args, detach=True, timeout=60)
            with lock:
                outcomes["created" if r.rc == 0 else "refused"] += 1
                if r.timed_out:
                    hung.append(str(r))

        for round_ in range(self.ROUNDS):
            live = tasks()
            missing = self.RUNNING - sum(1 for cid, (_, st) in live.items() if cid.startswith("t10-") and st == "RUNNING")
            threads = []
            for _ in range(max(0, missing)):
                serial += 1
                cid = f"t10-{serial:04d}"
                # ctr's arguments replace the image's whole command line, module path included.
                args = [sleeper.argv[0], "0.3"] if serial % 5 == 0 else []
                threads.append(threading.Thread(target=create, args=(cid, args)))
            # Counted before any of them starts: one that returns at once must count.
            finished_before = outcomes["created"] + outcomes["refused"]
            for t in threads:
                t.start()
            # The kill lands once a random share of this round's creates has returned: before
            # the first, among them, or after the last.
            due = rng.randint(0, len(threads))
            returned = wait_for(lambda: outcomes["created"] + outcomes["refused"] - finished_before >= due, 120, interval=0.01)
            self.assertTrue(returned, f"round {round_}: {due} creates did not return within 120 s")
            Wasmletd.kill9()
            outcomes["daemon_kills"] += 1
            if round_ % 2 == 1:
                shims = serving_shims()
                if shims:
                    victim = rng.choice(shims)
                    try:
                        os.kill(victim, signal.SIGKILL)
                        outcomes["shim_kills"] += 1
                    except ProcessLookupError:
                        pass
            Wasmletd.ensure_running()
            for t in threads:
                t.join()
            self.assertEqual(hung, [], f"round {round_}: ctr run hung across a daemon kill")
            # Every task settles: the ones of the killed daemon are reported stopped.
            def unsettled():
                return {c: s for c, (_, s) in tasks().items() if c.startswith("t10-") and s not in ("RUNNING", "STOPPED")}
            left = wait_for(lambda: not unsettled(), 30)
            self.assertTrue(left, f"round {round_}: tasks stuck: {unsettled()}")
            for cid, (_, status) in tasks().items():
                if cid.startswith("t10-") and status == "STOPPED":
                    codes[cid] = exit_code(cid)
                    ctr("container", "delete", cid, timeout=20)
            # Containers whose task never came (a create refused) or whose shim died go too.
            for cid in containers():
                if cid.startswith("t10-") and cid not in tasks():
                    ctr("container", "delete", cid, timeout=20)

        # The end: everything stopped, deleted, and accounted for.
        for cid in [c for c in tasks() if c.startswith("t10-")]:
            ctr("task", "kill", "-s", "SIGKILL", cid, timeout=10)
        wait_for(lambda: all(s == "STOPPED" for c, (_, s) in tasks().items() if c.startswith("t10-")), 30)
        for cid, (_, status) in tasks().items():
            if cid.startswith("t10-"):
                codes[cid] = exit_code(cid)
        for cid in containers():
            if cid.startswith("t10-"):
                ctr("container", "delete", cid, timeout=20)
        ctr("container", "delete", "t10-warm", timeout=20)

        bad = {cid: code for cid, code in codes.items() if code not in (0, 137)}
        print(f"\n    {self.ROUNDS} rounds: {outcomes['daemon_kills']} daemon kills, {outcomes['shim_kills']} shim kills, "
              f"{outcomes['created']} creates succeeded, {outcomes['refused']} refused cleanly; "
              f"exit codes: {sum(1 for c in codes.values() if c == 137)}x137, "
              f"{sum(1 for c in codes.values() if c == 0)}x0, {len(bad)} other", end="", flush=True)
        self.assertEqual(bad, {}, "tasks reported with a wrong exit code")
        self.assertEqual([c for c in tasks() if c.startswith("t10-")], [], "tasks left")
        self.assertEqual([c for c in containers() if c.startswith("t10-")], [], "containers left")
        self.assertEqual([m for m in bundle_mounts() if "/t10-" in m], [], "rootfs mounts left")
        fifos = wait_for(lambda: not [f for f in os.listdir(os.path.join(WORK, "fifo")) if "t10-" in f], 10)
        self.assertTrue(fifos, f"FIFOs left: {os.listdir(os.path.join(WORK, 'fifo'))}")
        gone = wait_for(lambda: set(shim_pids()) <= set(self.shims_before) or None, 15)
        self.assertTrue(gone, f"shims left: {sorted(set(shim_pids()) - set(self.shims_before))}")
        sockets = [s for s in os.listdir(os.path.join(WORK, "s"))]
        self.assertTrue(wait_for(lambda: len(os.listdir(os.path.join(WORK, "s"))) <= len(self.shims_before), 10),
                        f"shim sockets left: {sockets}")
        records = wasmletctl("list")
        self.assertEqual(records.rc, 0, f"wasmletctl list failed\n{records}")
        left_records = [l for l in records.out.splitlines()[1:] if "t10-" in l]
        self.assertEqual(left_records, [], "daemon records left")
        # A parked guest thread ends 5 s after its last guest (GuestThread.idleLifetime), so
        # none is left; the daemon's own threads and its descriptors are a fresh daemon's.
        def at_baseline():
            now = daemon_resources()
            return (now["fds"] <= baseline["fds"] and now["threads"] <= baseline["threads"]
                    and now["guest threads"] == 0 and now["dispatch workers"] <= DISPATCH_WORKERS_MAX)
        now = wait_for(at_baseline, 15)
        print(f"\n    daemon: fresh {baseline}, after {daemon_resources()}; threads fresh {baseline_names}, "
              f"after {daemon_thread_names()}", end="", flush=True)
        self.assertTrue(now, f"daemon resources {daemon_resources()} above a fresh daemon's {baseline}; "
                        f"threads now {daemon_thread_names()}, fresh {baseline_names}")


ORDER = [T12Chaos]
