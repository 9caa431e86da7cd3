"""Shared helpers for the containerd end-to-end tests and benchmarks.

scripts/e2e-containerd.sh starts wasmletd and containerd in a temporary directory and exports
E2E_WORK, E2E_BIN, E2E_SNAPSHOTTER and E2E_ROOT. Every external command runs with a timeout, so
a hung shim or daemon fails a test instead of hanging the run.
"""
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ociimage  # noqa: E402

WORK = os.environ.get("E2E_WORK", "")
BIN = os.environ.get("E2E_BIN", "")
ROOT = os.environ.get("E2E_ROOT", os.path.dirname(os.path.dirname(HERE)))
SNAPSHOTTER = os.environ.get("E2E_SNAPSHOTTER", "overlayfs")
ADDRESS = os.path.join(WORK, "containerd.sock")
WASMLET_SOCKET = os.path.join(WORK, "wasmlet.sock")
RUNTIME = "io.containerd.wasmlet.v1"
SHIM = "containerd-shim-wasmlet-v1"
NS = "default"
K8S_NS = "k8s.io"
COMMAND_LOG = os.path.join(WORK, "logs", "commands.log") if WORK else os.devnull

HELLO = "docker.io/wasmlet/hello:latest"
SLEEPER = "docker.io/wasmlet/sleeper:latest"
MEMBOMB = "docker.io/wasmlet/membomb:latest"
ECHO = "docker.io/wasmlet/echo:latest"
CAT = "docker.io/wasmlet/cat:latest"
HTTPD = "docker.io/wasmlet/httpd:latest"
TICKER = "docker.io/wasmlet/ticker:latest"
HTTPD_TEXT = "hello from wasmlet httpd"
PAUSE = "docker.io/wasmlet/pause:latest"
WAGI_PROBE = "docker.io/wasmlet/wagi-probe:latest"
HELLO_TEXT = "hello from wasmlet"


class Result:
    def __init__(self, argv, rc, out, err, seconds):
        self.argv, self.rc, self.out, self.err, self.seconds = argv, rc, out, err, seconds

    @property
    def timed_out(self):
        return self.rc == -999

    def __str__(self):
        return (f"$ {shlex.join(self.argv)}\n-> exit {self.rc} after {self.seconds:.2f} s"
                f"\nstdout: {self.out.strip()[-2000:]!r}\nstderr: {self.err.strip()[-2000:]!r}")


def run(argv, timeout=30, env=None, log=True, input=None):
    """Runs argv, capturing output; never raises on failure or timeout (rc -999 then). stdin is
    `input` when given, /dev/null otherwise."""
    start = time.monotonic()
    try:
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, **stdin)
        r = Result(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - start)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        r = Result(argv, -999, out, err + f"\n[timed out after {timeout} s]", time.monotonic() - start)
    if log:
        with open(COMMAND_LOG, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {r}\n")
    return r


def ctr(*args, ns=NS, timeout=30, input=None):
    return run(["ctr", "-a", ADDRESS, "-n", ns, *args], timeout=timeout, input=input)


def ctr_run(image, cid, *args, ns=NS, runtime=RUNTIME, flags=(), detach=False, timeout=60, input=None):
    """`ctr run --rm` (or `-d`) IMAGE ID [ARGS...] with the wasmlet runtime by default; its
    stdin is `input`, or /dev/null."""
    mode = ["-d"] if detach else ["--rm"]
    return ctr("run", *mode, "--snapshotter", SNAPSHOTTER, "--fifo-dir", os.path.join(WORK, "fifo"),
               "--runtime", runtime, *flags, image, cid, *args, ns=ns, timeout=timeout, input=input)


def tasks(ns=NS):
    """{id: (pid, status)} from `ctr task ls`."""
    r = ctr("task", "ls", ns=ns)
    if r.rc != 0:
        raise AssertionError(f"ctr task ls failed\n{r}")
    out = {}
    for line in r.out.splitlines()[1:]:
        f = line.split()
        if len(f) >= 3:
            out[f[0]] = (f[1], f[2])
    return out


def containers(ns=NS):
    r = ctr("container", "ls", "-q", ns=ns)
    if r.rc != 0:
        raise AssertionError(f"ctr container ls failed\n{r}")
    return [l.strip() for l in r.out.splitlines() if l.strip()]


def wait_for(predicate, timeout, interval=0.1):
    """Polls predicate() until it returns something truthy; returns it, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def shim_pids(binary=SHIM):
    """PIDs of processes running `binary` whose arguments or environment mention this run's
    temporary directory (containerd passes its environment on), so shims of other test runs on
    the machine are not counted."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        cmd = _read(f"/proc/{d}/cmdline", "rb")
        if not cmd:
            continue
        argv = cmd.split(b"\0")
        if os.path.basename(argv[0]).decode(errors="replace") != binary:
            continue
        env = _read(f"/proc/{d}/environ", "rb") or b""
        if WORK.encode() in cmd or WORK.encode() in env:
            pids.append(int(d))
    return sorted(pids)


def mounts_under(prefix=None):
    """Mount points under prefix (default: the temporary directory)."""
    prefix = prefix or WORK
    out = []
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp.startswith(prefix):
            out.append(mp)
    return out


def bundle_mounts(cid=None, ns=NS):
    """Mounts of task bundles' rootfs (all of the namespace, or of one container)."""
    base = os.path.join(WORK, "containerd", "state", "io.containerd.runtime.v2.task", ns)
    return [m for m in mounts_under(base) if cid is None or f"/{cid}/" in m + "/"]


def proc_status(pid):
    """{'VmRSS': kB, 'Pss': kB, ...} of a process (status and smaps_rollup), empty when gone."""
    out = {}
    for path in (f"/proc/{pid}/status", f"/proc/{pid}/smaps_rollup"):
        for line in (_read(path) or "").splitlines():
            k, _, v = line.partition(":")
            v = v.split()
            if len(v) == 2 and v[1] == "kB":
                out.setdefault(k.strip(), int(v[0]))
    return out


# ---- wasmletd and containerd, each started by its script in WORK, its pid in a file

class _ScriptStarted:
    pidfile = ""
    start_script = ""

    @classmethod
    def pid(cls):
        try:
            return int(open(cls.pidfile).read().strip())
        except (OSError, ValueError):
            return None

    @classmethod
    def alive(cls):
        pid = cls.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie counts as dead
        stat = _read(f"/proc/{pid}/stat") or ""
        return ") Z " not in stat

    @classmethod
    def signal(cls, sig, wait=10):
        pid = cls.pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        wait_for(lambda: not cls.alive(), wait)


class Wasmletd(_ScriptStarted):
    pidfile = os.path.join(WORK, "wasmletd.pid")
    start_script = os.path.join(WORK, "start-wasmletd.sh")

    @classmethod
    def answers(cls):
        return run([os.path.join(BIN, "wasmletctl"), "--socket", WASMLET_SOCKET, "version"],
                   timeout=5, log=False).rc == 0

    @classmethod
    def kill9(cls):
        cls.signal(signal.SIGKILL)

    @classmethod
    def stop(cls):
        cls.signal(signal.SIGTERM, wait=15)
        if cls.alive():
            cls.kill9()

    @classmethod
    def ensure_running(cls):
        if cls.alive() and cls.answers():
            return
        r = run([cls.start_script], timeout=30)
        if r.rc != 0:
            raise AssertionError(f"could not (re)start wasmletd\n{r}")


class Containerd(_ScriptStarted):
    """The run's containerd, as the containerd-restart test stops and starts it."""
    pidfile = os.path.join(WORK, "containerd.pid")
    start_script = os.path.join(WORK, "start-containerd.sh")

    @classmethod
    def kill9(cls):
        """SIGKILL, as a crash would; its shims live on. Returns once the process is gone."""
        cls.signal(signal.SIGKILL)
        if cls.alive():
            raise AssertionError(f"containerd {cls.pid()} still alive 10 s after SIGKILL")

    @classmethod
    def start(cls):
        r = run([cls.start_script], timeout=30)
        if r.rc != 0:
            raise AssertionError(f"could not restart containerd\n{r}")


def wasmletctl(*args, timeout=15):
    return run([os.path.join(BIN, "wasmletctl"), "--socket", WASMLET_SOCKET, *args], timeout=timeout)


# ---- images

class Image:
    def __init__(self, name, tar, platform, argv):
        self.name, self.tar, self.platform, self.argv = name, tar, platform, argv

    @property
    def module(self):
        """The module path inside the image (the entrypoint's first word)."""
        return self.argv[0] if self.argv else ""

    @property
    def is_wasi(self):
        return self.platform.startswith("wasi")

    def __repr__(self):
        return f"Image({self.name} {self.platform} {self.argv} from {self.tar})"


_images = None
unreadable_archives = {}  # archive path -> why ociimage.describe could not read it
_imported = {}  # (name, namespace) -> the archive imported under that name
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def images():
    """All images the run has, by (name, platform). The project's own images
    (scripts/build-example-images.sh into WORK/images) come first; for every example guest it did
    not make, ociimage.py packs examples/build/<guest>.wasm (host platform, entrypoint
    /<guest>.wasm), plus a wasip1/wasm hello and the pause image (the sleeper, which without an
    argument sleeps until killed)."""
    global _images
    if _images is not None:
        return _images
    found = {}
    img_dir = os.path.join(WORK, "images")
    for fname in sorted(os.listdir(img_dir)):
        if fname.endswith(".tar"):
            path = os.path.join(img_dir, fname)
            try:
                for name, plat, argv in ociimage.describe(path):
                    found.setdefault((name, plat), Image(name, path, plat, argv))
            except Exception as e:  # T0Images fails on it; the other tests use packed images
                unreadable_archives[path] = " ".join(str(e).split())
                print(f"e2e: cannot read {path}: {unreadable_archives[path]}", file=sys.stderr)
    own = os.path.join(WORK, "images", "own")
    os.makedirs(own, exist_ok=True)
    wasm_dir = os.path.join(ROOT, "examples", "build")
    host = f"linux/{HOST_ARCH}"

    def pack(name, guest, plat):
        # The module is named after the image (pause.wasm holds the sleeper), so no two images
        # share a config digest: the CRI plugin keys images by it.
        os_, arch = plat.split("/")
        wasm = os.path.join(wasm_dir, f"{guest}.wasm")
        if not os.path.exists(wasm):
            print(f"e2e: {wasm} missing (run scripts/build-examples.sh); no image {name}", file=sys.stderr)
            return
        base = name.rsplit("/", 1)[-1].split(":")[0]
        tar = os.path.join(own, f"{base}-{os_}.tar")
        module = f"/{base}.wasm"
        ociimage.write_image(tar, name, {module: (open(wasm, "rb").read(), 0o755)},
                             [module], os_=os_, arch=arch)
        found[(name, plat)] = Image(name, tar, plat, [module])
        print(f"e2e: packed {name} ({plat}) from examples/build/{guest}.wasm", file=sys.stderr)

    names = {n for n, _ in found}
    for guest in ("hello", "sleeper", "membomb", "echo", "cat", "httpd", "ticker"):
        name = f"docker.io/wasmlet/{guest}:latest"
        if not any(n == name and not p.startswith("wasi") for n, p in found):
            pack(name, guest, host)
    if not any(n == PAUSE for n in names):
        pack(PAUSE, "sleeper", host)
    if not any(n == WAGI_PROBE for n in names):
        pack(WAGI_PROBE, "wagi_probe", host)
    if not any(p.startswith("wasi") and "hello" in n for n, p in found):
        pack("docker.io/wasmlet/hello-wasi:latest", "hello", "wasip1/wasm")
    _images = found
    return found


def image(name, wasi=False):
    for (n, p), img in images().items():
        if n == name and p.startswith("wasi") == wasi:
            return img
    raise AssertionError(f"no image {name} ({'wasi' if wasi else 'host'} platform); have "
                         f"{sorted(images())}")


def wasi_hello():
    for (n, p), img in images().items():
        if p.startswith("wasi") and "hello" in n:
            return img
    raise AssertionError(f"no wasi-platform hello image; have {sorted(images())}")


def import_image(img, ns=NS):
    """`ctr image import` unless the name already holds this archive in the namespace (a host
    and a wasi image may share a name); a wasi-platform image with --all-platforms."""
    key = (img.name, ns)
    if _imported.get(key) == img.tar:
        return
    flags = ["--all-platforms"] if img.is_wasi else []
    r = ctr("image", "import", "--snapshotter", SNAPSHOTTER, *flags, img.tar, ns=ns, timeout=120)
    if r.rc != 0:
        raise AssertionError(f"image import of {img} failed\n{r}")
    _imported[key] = img.tar


def cleanup_namespace(ns=NS):
    """Force-removes what a failed test left behind (tasks, containers), so the next test starts
    clean. Returns what it found."""
    left = []
    for cid in list(tasks(ns)):
        left.append(f"task {cid}")
        ctr("task", "kill", "-s", "SIGKILL", cid, ns=ns, timeout=10)
        ctr("task", "delete", "-f", cid, ns=ns, timeout=20)
    for cid in containers(ns):
        left.append(f"container {cid}")
        ctr("container", "delete", cid, ns=ns, timeout=20)
    return left
