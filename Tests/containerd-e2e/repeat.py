#!/usr/bin/env python3
"""Repeat loop: many `ctr run --rm` of hello under CPU load, counting runs whose output is lost.

    repeat.py [--count N] [--parallel P] [--busy B] [--max-seconds S] [--guest hello|cat]

Runs N `ctr run --rm` of hello (P at a time) beside B busy loops (`sh -c 'while :; do :; done'`,
started here and stopped by their PIDs at the end). A run is "lost" when it exits 0 but its
stdout lacks hello's line (the race this loop exists to catch: output dropped between the guest,
the FIFOs and containerd's client); "failed" when it exits non-zero or times out. With
`--guest cat`, each run pipes a line into `ctr run --rm` of the cat example (stdin FIFO, the
guest copies it to stdout) and is "lost" unless that line comes back. Bounded: stops starting
runs after S seconds. Every tenth of the runs it samples wasmletd's RSS, descriptors and threads
(a soak: they should stay flat) and prints the curve at the end. Prints one summary line and
exits 1 when anything was lost or failed. Needs the environment of scripts/e2e-containerd.sh (`scripts/e2e-containerd.sh repeat`).
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ociimage  # noqa: E402
from lib import (ADDRESS, HELLO, HELLO_TEXT, NS, ROOT, RUNTIME, SNAPSHOTTER, WORK, Result,  # noqa: E402
                 Wasmletd, cleanup_namespace, ctr_run, image, import_image, proc_status)

CAT = "docker.io/wasmlet/repeat-cat:latest"


def import_cat():
    """The cat example (no arguments: stdin to stdout) as an image of its own."""
    wasm = os.path.join(ROOT, "examples", "build", "cat.wasm")
    tar = os.path.join(WORK, "images", "repeat-cat.tar")
    ociimage.write_image(tar, CAT, {"/cat.wasm": (open(wasm, "rb").read(), 0o644)}, ["/cat.wasm"])
    r = subprocess.run(["ctr", "-a", ADDRESS, "-n", NS, "image", "import", "--snapshotter", SNAPSHOTTER, tar],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"import of {tar} failed: {r.stderr}")


def cat_run(cid, text, timeout):
    """`ctr run --rm` of cat with `text` on its stdin."""
    argv = ["ctr", "-a", ADDRESS, "-n", NS, "run", "--rm", "--snapshotter", SNAPSHOTTER,
            "--fifo-dir", os.path.join(WORK, "fifo"), "--runtime", RUNTIME, CAT, cid]
    start = time.monotonic()
    try:
        p = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=timeout)
        return Result(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        return Result(argv, -999, "", f"[timed out after {timeout} s: {shlex.join(argv)}]", time.monotonic() - start)


def daemon_sample():
    """(RSS KiB, descriptors, threads) of wasmletd now."""
    pid = Wasmletd.pid()
    return (proc_status(pid).get("VmRSS", 0), len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--busy", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=1500)
    ap.add_argument("--guest", choices=["hello", "cat"], default="hello")
    a = ap.parse_args()
    if a.guest == "cat":
        import_cat()
    else:
        import_image(image(HELLO))

    busy = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(a.busy)]
    lock = threading.Lock()
    counts = {"ok": 0, "lost": 0, "failed": 0}
    examples = []
    next_index = [0]
    samples = [(0, daemon_sample())]
    tenth = max(1, a.count // 10)
    deadline = time.monotonic() + a.max_seconds

    def worker():
        while True:
            with lock:
                i = next_index[0]
                if i >= a.count or time.monotonic() >= deadline:
                    return
                next_index[0] += 1
            if a.guest == "cat":
                expected = f"line {i} through stdin\n"
                r = cat_run(f"rep-{i:05d}", expected, timeout=120)
            else:
                expected = HELLO_TEXT
                r = ctr_run(HELLO, f"rep-{i:05d}", timeout=120)
            kind = "ok" if r.rc == 0 and expected in r.out else "lost" if r.rc == 0 else "failed"
            with lock:
                counts[kind] += 1
                if kind != "ok" and len(examples) < 5:
                    examples.append(f"run {i}: {r}")
                done = sum(counts.values())
                if done % tenth == 0:
                    samples.append((done, daemon_sample()))
                if done % 250 == 0:
                    print(f"repeat: {done} runs, {counts['lost']} lost, {counts['failed']} failed",
                          file=sys.stderr, flush=True)

    start = time.monotonic()
    try:
        threads = [threading.Thread(target=worker) for _ in range(a.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for p in busy:
            p.send_signal(signal.SIGTERM)
        for p in busy:
            p.wait()
    wall = time.monotonic() - start
    for e in examples:
        print(e)
    print("repeat: wasmletd every tenth of the runs (runs done: RSS KiB, descriptors, threads): "
          + "; ".join(f"{n}: {rss}, {fds}, {threads}" for n, (rss, fds, threads) in samples), flush=True)
    left = cleanup_namespace()
    total = sum(counts.values())
    print(f"repeat: {total} runs of {a.guest} ({a.parallel} at a time, {a.busy} busy loops) in {wall:.0f} s: "
          f"{counts['ok']} ok, {counts['lost']} lost output (exit 0, no line), {counts['failed']} failed"
          + (f"; stopped at the {a.max_seconds:.0f} s bound" if total < a.count else "")
          + (f"; left behind: {left}" if left else ""), flush=True)
    return 0 if counts["lost"] == 0 and counts["failed"] == 0 and not left else 1


if __name__ == "__main__":
    sys.exit(main())
