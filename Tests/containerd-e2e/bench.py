#!/usr/bin/env python3
"""Benchmarks of wasmlet under containerd, against the containerd + wasmletd that
`scripts/e2e-containerd.sh bench` started (use release binaries: WASMLET_BIN_DIR=.build/release).

    bench.py [--runs N] [--seq N] [--containers N] [--runc-containers N] [--skip SECTION...]

Sections: start (ctr run --rm of hello, wasmlet vs runc with a static native hello, interleaved),
seq (sequential wasmlet runs, tasks/s), shim (RSS and PSS of the shim serving one sleeper, and of
10 sleepers sharing a group annotation), percontainer (memory added per running container,
wasmlet vs runc). Prints medians (the machines are noisy) and a markdown table at the end.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from lib import (HELLO, HELLO_TEXT, ROOT, SLEEPER, WORK, Wasmletd, cleanup_namespace, ctr,
                 ctr_run, image, import_image, proc_status, shim_pids, tasks, wait_for)
import ociimage

RUNC = "io.containerd.runc.v2"
NATIVE = "docker.io/wasmlet/native-hello:latest"
rows = []  # (section, metric, value)


def note(section, metric, value):
    rows.append((section, metric, value))
    print(f"  {metric}: {value}", flush=True)


def build_native_image():
    """A static native hello (/hello) and sleeper (/sleep) in one linux image, for runc."""
    d = os.path.join(WORK, "native")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "sleep.c"), "w") as f:
        f.write("#include <signal.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
                "static void bye(int s) { (void)s; _exit(0); }\n"
                "int main(void) { signal(SIGTERM, bye); for (;;) pause(); }\n")
    for name, src in (("hello", os.path.join(ROOT, "examples", "guests", "hello.c")),
                      ("sleep", os.path.join(d, "sleep.c"))):
        subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(d, name), src], check=True)
    tar = os.path.join(d, "native-hello.tar")
    files = {f"/{n}": (open(os.path.join(d, n), "rb").read(), 0o755) for n in ("hello", "sleep")}
    ociimage.write_image(tar, NATIVE, files, ["/hello"])
    r = ctr("image", "import", tar, timeout=60)
    if r.rc != 0:
        raise RuntimeError(f"import of the native image failed\n{r}")


def ms(seconds):
    return f"{seconds * 1000:.0f} ms"


def check(r, what):
    if r.rc != 0 or HELLO_TEXT not in r.out:
        raise RuntimeError(f"{what} failed\n{r}")


def bench_start(runs):
    print(f"== start: ctr run --rm hello, wasmlet vs runc (native static), {runs} runs each, interleaved")
    # warm-up: page cache, wasmletd's module cache, the first shim exec
    check(ctr_run(NATIVE, "br-warm", runtime=RUNC), "runc warm-up")
    wasm_ok = True
    try:
        check(ctr_run(HELLO, "bw-warm"), "wasmlet warm-up")
    except RuntimeError as e:  # still measure runc, so the baseline is known
        wasm_ok = False
        note("start", "wasmlet FAILED", str(e).splitlines()[-1][:160])
    w, n = [], []
    for i in range(runs):
        if wasm_ok:
            r = ctr_run(HELLO, f"bw-{i}")
            check(r, "wasmlet run")
            w.append(r.seconds)
        r = ctr_run(NATIVE, f"br-{i}", runtime=RUNC)
        check(r, "runc run")
        n.append(r.seconds)
    mn = statistics.median(n)
    if w:
        mw = statistics.median(w)
        note("start", f"ctr run --rm hello, wasmlet, median of {runs}", ms(mw))
    note("start", f"ctr run --rm hello, runc (static native), median of {runs}", ms(mn))
    if w:
        note("start", "ratio wasmlet / runc", f"{mw / mn:.2f}")
        note("start", "wasmlet min / max", f"{ms(min(w))} / {ms(max(w))}")
    note("start", "runc min / max", f"{ms(min(n))} / {ms(max(n))}")
    if not wasm_ok:
        raise RuntimeError("wasmlet runs failed")


def bench_seq(count):
    print(f"== seq: {count} sequential ctr run --rm of hello with wasmlet")
    start = time.monotonic()
    for i in range(count):
        check(ctr_run(HELLO, f"bs-{i}"), "wasmlet run")
    wall = time.monotonic() - start
    note("seq", f"{count} sequential runs", f"{wall:.1f} s, {count / wall:.1f} tasks/s")


def rss_pss(pids):
    rss = pss = 0
    for pid in pids:
        st = proc_status(pid)
        rss += st.get("VmRSS", 0)
        pss += st.get("Pss", 0)
    return rss, pss


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def start_sleepers(prefix, count, runtime=None, image_name=SLEEPER, args=(), flags=()):
    kw = {"runtime": runtime} if runtime else {}
    for i in range(count):
        r = ctr_run(image_name, f"{prefix}{i}", *args, detach=True, flags=flags, **kw)
        if r.rc != 0:
            raise RuntimeError(f"starting {prefix}{i} failed\n{r}")
    ok = wait_for(lambda: sum(1 for t, (_, s) in tasks().items()
                              if t.startswith(prefix) and s == "RUNNING") == count, 30)
    if not ok:
        raise RuntimeError(f"not all {count} {prefix}* tasks RUNNING: {tasks()}")
    time.sleep(1.0)  # let the processes settle


def bench_shim():
    print("== shim: memory of the shim serving one running sleeper")
    before = set(shim_pids())
    start_sleepers("bm-one-", 1)
    new = sorted(set(shim_pids()) - before)
    rss, pss = rss_pss(new)
    note("shim", f"shim processes for 1 sleeper", f"{len(new)} (pids {new})")
    note("shim", "shim VmRSS / Pss, 1 sleeper", f"{mib(rss)} / {mib(pss)}")
    cleanup_namespace()
    wait_for(lambda: set(shim_pids()) <= before, 10)

    print("== shim: 10 sleepers with one io.kubernetes.cri.sandbox-id annotation (a pod's group)")
    before = set(shim_pids())
    start_sleepers("bm-grp-", 10, flags=["--annotation", "io.kubernetes.cri.sandbox-id=bench-group"])
    new = sorted(set(shim_pids()) - before)
    rss, pss = rss_pss(new)
    note("shim", "shim processes for 10 grouped sleepers", str(len(new)))
    note("shim", "all those shims' VmRSS / Pss", f"{mib(rss)} / {mib(pss)}")
    cleanup_namespace()
    wait_for(lambda: set(shim_pids()) <= before, 10)


def pids_of(binary):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                argv0 = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")[0]
            except OSError:
                continue
            if os.path.basename(argv0).decode(errors="replace") == binary:
                env = b""
                try:
                    env = open(f"/proc/{d}/environ", "rb").read()
                except OSError:
                    pass
                if WORK.encode() in env or WORK.encode() in open(f"/proc/{d}/cmdline", "rb").read():
                    out.append(int(d))
    return out


def bench_percontainer(n_wasm, n_runc):
    print(f"== percontainer: memory added per running container ({n_wasm} wasmlet sleepers)")

    def wasmlet_total():
        return rss_pss([Wasmletd.pid()] + shim_pids())

    cleanup_namespace()
    time.sleep(1)
    wasm_error = None
    try:
        r0, p0 = wasmlet_total()
        d0 = proc_status(Wasmletd.pid()).get("VmRSS", 0)
        start_sleepers("bp-", n_wasm)
        r1, p1 = wasmlet_total()
        d1 = proc_status(Wasmletd.pid()).get("VmRSS", 0)
        shims = shim_pids()
        sr, sp = rss_pss(shims)
        note("percontainer", f"wasmlet: shim processes for {n_wasm} sleepers", str(len(shims)))
        note("percontainer", "wasmlet: shims' VmRSS / Pss per container", f"{mib(sr / n_wasm)} / {mib(sp / n_wasm)}")
        note("percontainer", f"wasmletd + shims RSS, before / with {n_wasm} sleepers", f"{mib(r0)} / {mib(r1)}")
        note("percontainer", f"wasmletd alone RSS, before / with {n_wasm} sleepers", f"{mib(d0)} / {mib(d1)}")
        note("percontainer", "wasmlet: RSS added per container (daemon + shims)", mib((r1 - r0) / n_wasm))
        note("percontainer", "wasmlet: PSS added per container (daemon + shims)", mib((p1 - p0) / n_wasm))
    except RuntimeError as e:  # still measure runc
        wasm_error = e
        note("percontainer", "wasmlet FAILED", str(e).splitlines()[-1][:160])
    cleanup_namespace()

    if n_runc > 0:
        bench_percontainer_runc(n_runc)
    if wasm_error:
        raise wasm_error


def bench_percontainer_runc(n_runc):
    print(f"== percontainer: runc, {n_runc} static native sleepers")

    def runc_total():
        shims = pids_of("containerd-shim-runc-v2")
        kids = []
        for pid in shims:  # the container processes are the shims' children
            try:
                for line in open(f"/proc/{pid}/task/{pid}/children").read().split():
                    kids.append(int(line))
            except OSError:
                pass
        return rss_pss(shims + kids), len(shims), len(kids)

    cleanup_namespace()
    time.sleep(1)
    (r0, p0), _, _ = runc_total()
    start_sleepers("bpr-", n_runc, runtime=RUNC, image_name=NATIVE, args=["/sleep"])
    (r1, p1), nshims, nkids = runc_total()
    note("percontainer", f"runc: shims / container processes", f"{nshims} / {nkids}")
    note("percontainer", "runc: RSS added per container (shim + process)", mib((r1 - r0) / n_runc))
    note("percontainer", "runc: PSS added per container (shim + process)", mib((p1 - p0) / n_runc))
    cleanup_namespace()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 21)))
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--runc-containers", type=int, default=20)
    ap.add_argument("--skip", nargs="*", default=[])
    a = ap.parse_args()
    Wasmletd.ensure_running()
    for name in (HELLO, SLEEPER):
        import_image(image(name))
    build_native_image()
    failed = []
    sections = [("start", lambda: bench_start(a.runs)), ("seq", lambda: bench_seq(a.seq)),
                ("shim", bench_shim),
                ("percontainer", lambda: bench_percontainer(a.containers, a.runc_containers))]
    for name, fn in sections:
        if name in a.skip:
            continue
        try:
            fn()
        except Exception as e:
            failed.append(name)
            print(f"!! {name} failed: {e}", flush=True)
            note(name, "FAILED", str(e).splitlines()[0][:120])
            cleanup_namespace()
    print("\n| section | metric | value |\n|---|---|---|")
    for s, m, v in rows:
        print(f"| {s} | {m} | {v} |")
    print(f"\nmachine: {os.cpu_count()} cores; binaries: {os.environ.get('E2E_BIN')}; "
          f"containerd snapshotter {os.environ.get('E2E_SNAPSHOTTER')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
