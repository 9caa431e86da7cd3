#!/usr/bin/env python3
"""Time the compute guests' exported `bench(n)` on peer runtimes, for comparison with wasmlet.

For each guest (fib, sha256, sort) it reports the median time of bench(n) over --runs calls,
after one warm-up call, on:
  wasmtime  PyPI `wasmtime` (Cranelift JIT), instantiated with a WASI linker; bench is called
            directly (no _start), on one instance reused for all runs;
  wasm3     PyPI `pywasm3` (interpreter, no WASI): every wasi_snapshot_preview1 import of the
            module is linked to a stub that records the call (bench must make none);
  native    examples/build/native/<guest> --bench N RUNS, which times bench(n) itself with
            clock_gettime, so process start is excluded.
Output: one JSON object on stdout, e.g.
  {"fib": {"n": 30, "runs": 5, "wasmtime_ns": ..., "wasm3_ns": ..., "native_ns": ...,
           "checksum": 832040, "checksums_match": true}, ...}
A peer that is missing or fails is null, with a "<peer>_reason" field. Exit status 1 when the
checksums disagree or a stub WASI import was called. Versions go to stderr.

Build the guests first: scripts/build-examples.sh.  Peers: pip install wasmtime pywasm3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DEFAULT_N = {"fib": 30, "sha256": 4, "sort": 1000000}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- reading a module's imports

def _leb(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def _name(buf, pos):
    n, pos = _leb(buf, pos)
    return buf[pos:pos + n].decode(), pos + n


def function_imports(wasm):
    """[(module, name, params, results)] for the function imports of a wasm binary;
    params and results are value-type bytes (0x7f i32, 0x7e i64, 0x7d f32, 0x7c f64)."""
    assert wasm[:4] == b"\0asm", "not a wasm module"
    types, imports, pos = [], [], 8
    while pos < len(wasm):
        section, pos = wasm[pos], pos + 1
        size, pos = _leb(wasm, pos)
        body_end, p = pos + size, pos
        if section == 1:  # type section
            count, p = _leb(wasm, p)
            for _ in range(count):
                p += 1  # 0x60 func type
                n, p = _leb(wasm, p)
                params, p = wasm[p:p + n], p + n
                n, p = _leb(wasm, p)
                results, p = wasm[p:p + n], p + n
                types.append((params, results))
        elif section == 2:  # import section
            count, p = _leb(wasm, p)
            for _ in range(count):
                module, p = _name(wasm, p)
                name, p = _name(wasm, p)
                kind, p = wasm[p], p + 1
                if kind == 0:  # function
                    index, p = _leb(wasm, p)
                    imports.append((module, name) + types[index])
                elif kind == 1:  # table: reftype, limits
                    flags, p = _leb(wasm, p + 1)
                    _, p = _leb(wasm, p)
                    if flags & 1:
                        _, p = _leb(wasm, p)
                elif kind == 2:  # memory: limits
                    flags, p = _leb(wasm, p)
                    _, p = _leb(wasm, p)
                    if flags & 1:
                        _, p = _leb(wasm, p)
                elif kind == 3:  # global: valtype, mutability
                    p += 2
            return imports
        pos = body_end
    return imports


# ---------------------------------------------------------------- peers

def median_ns(call, n, runs):
    checksum = call(n)  # warm-up (and JIT/translation)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        c = call(n)
        times.append(time.perf_counter_ns() - t0)
        if c != checksum:
            raise RuntimeError(f"checksum changed between runs: {checksum} then {c}")
    return int(statistics.median(times)), checksum


def run_wasmtime(path, n, runs):
    import wasmtime

    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, path))
    bench = instance.exports(store)["bench"]
    return median_ns(lambda k: bench(store, k), n, runs)


def run_wasm3(path, n, runs, stub_calls):
    import wasm3

    wasm = open(path, "rb").read()
    env = wasm3.Environment()
    runtime = env.new_runtime(4 * 1024 * 1024)  # interpreter stack, bytes
    module = env.parse_module(wasm)
    runtime.load(module)
    letter = {0x7F: "i", 0x7E: "I", 0x7D: "f", 0x7C: "F"}
    for mod, name, params, results in function_imports(wasm):
        if mod != "wasi_snapshot_preview1":
            raise RuntimeError(f"unexpected import {mod}.{name}")
        signature = (letter[results[0]] if results else "v") + \
            "(" + "".join(letter[t] for t in params) + ")"

        def stub(*args, _name=name):
            stub_calls.append(_name)
            return 52  # ENOSYS

        module.link_function(mod, name, signature, stub)
    bench = runtime.find_function("bench")
    return median_ns(bench, n, runs)


def run_native(path, n, runs):
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} missing: run scripts/build-examples.sh")
    out = subprocess.run([path, "--bench", str(n), str(runs)], check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out)
    return result["median_ns"], result["checksum"]


def version(package):
    try:
        from importlib.metadata import version as v
        return v(package)
    except Exception:
        return None


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guests", default="fib,sha256,sort",
                    help="comma-separated guests, each optionally NAME=N "
                         "(default fib,sha256,sort with n = 30, 4 MiB, 1000000)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per peer (default 5)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "examples", "build"))
    args = ap.parse_args()

    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"bench-peers: wasmtime {version('wasmtime')}, pywasm3 {version('pywasm3')}, "
          f"native {cc or 'cc ?'}", file=sys.stderr)

    report, failed = {}, False
    for spec in filter(None, args.guests.split(",")):
        guest, _, n_text = spec.partition("=")
        n = int(n_text) if n_text else DEFAULT_N.get(guest, 0)
        wasm_path = os.path.join(args.build_dir, guest + ".wasm")
        entry = {"n": n, "runs": args.runs}
        checksums, stub_calls = {}, []
        peers = {
            "wasmtime": lambda: run_wasmtime(wasm_path, n, args.runs),
            "wasm3": lambda: run_wasm3(wasm_path, n, args.runs, stub_calls),
            "native": lambda: run_native(os.path.join(args.build_dir, "native", guest),
                                         n, args.runs),
        }
        for peer, run in peers.items():
            entry[peer + "_ns"] = None
            try:
                if peer != "native" and not os.path.exists(wasm_path):
                    raise FileNotFoundError(f"{wasm_path} missing: run scripts/build-examples.sh")
                entry[peer + "_ns"], checksums[peer] = run()
            except ImportError as e:
                package = "pywasm3" if peer == "wasm3" else peer
                entry[peer + "_reason"] = f"not installed ({e}); pip install {package}"
            except Exception as e:  # a failing peer is reported, not fatal
                entry[peer + "_reason"] = f"{type(e).__name__}: {e}".strip()
            print(f"bench-peers: {guest}({n}) {peer}: {entry[peer + '_ns']} ns",
                  file=sys.stderr)
        entry["checksum"] = next(iter(checksums.values()), None)
        entry["checksums_match"] = len(set(checksums.values())) <= 1
        if not entry["checksums_match"]:
            entry["checksums"] = checksums
            failed = True
        if stub_calls:
            entry["wasi_calls_from_bench"] = sorted(set(stub_calls))
            failed = True
        report[guest] = entry

    json.dump(report, sys.stdout, indent=2)
    print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
