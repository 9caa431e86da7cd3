"""The CRI path, driven the way kubelet drives it: runtime.v1 gRPC on containerd's socket, a pod
with RuntimeClass handler `wasmlet` on the host network, a container that completes and one that
is stopped, then teardown. The CRI messages come from cri/api.proto (a subset of upstream's),
compiled at test time with grpc_tools.protoc."""
import importlib
import os
import re
import subprocess
import sys
import time
import unittest
import uuid

from lib import (ADDRESS, HELLO, HELLO_TEXT, HERE, HTTPD, HTTPD_TEXT, K8S_NS, PAUSE, SLEEPER, TICKER,
                 WAGI_PROBE, WORK, Containerd, Wasmletd, image, import_image, mounts_under, run, shim_pids, wait_for)

TIMEOUT = 30  # seconds for any one CRI call (kubelet's default runtime request timeout is 2 min)


def compile_api():
    out = os.path.join(WORK, "cri-gen")
    os.makedirs(out, exist_ok=True)
    proto_dir = os.path.join(HERE, "cri")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}",
                    f"--python_out={out}", f"--grpc_python_out={out}",
                    os.path.join(proto_dir, "api.proto")], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


class CRITestCase(unittest.TestCase):
    """A CRI client (setUpClass) and kubelet-style best-effort teardown of what a test made."""

    @classmethod
    def setUpClass(cls):
        import grpc
        cls.pb, grpc_mod = compile_api()
        cls.channel = grpc.insecure_channel(f"unix://{ADDRESS}")
        cls.rt = grpc_mod.RuntimeServiceStub(cls.channel)
        cls.img = grpc_mod.ImageServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def setUp(self):
        Wasmletd.ensure_running()
        self.shims_before = shim_pids()
        self.sandbox_id = None
        self.container_ids = []

    def tearDown(self):
        # Best effort, as kubelet would retry: stop and remove what the test made.
        for cid in self.container_ids:
            for call, req in ((self.rt.StopContainer, self.pb.StopContainerRequest(container_id=cid, timeout=0)),
                              (self.rt.RemoveContainer, self.pb.RemoveContainerRequest(container_id=cid))):
                try:
                    call(req, timeout=TIMEOUT)
                except Exception:
                    pass
        if self.sandbox_id:
            for call, req in ((self.rt.StopPodSandbox, self.pb.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id)),
                              (self.rt.RemovePodSandbox, self.pb.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id))):
                try:
                    call(req, timeout=TIMEOUT)
                except Exception:
                    pass

    def call(self, name, request):
        """One CRI call; a gRPC error fails the test naming the request."""
        import grpc
        try:
            return getattr(self.rt, name)(request, timeout=TIMEOUT)
        except grpc.RpcError as e:
            error = f"CRI {name} failed: {e.code().name}: {e.details()}"
        self.fail(f"{error}\nrequest: {request}")

    def container_status(self, cid):
        return self.call("ContainerStatus", self.pb.ContainerStatusRequest(container_id=cid)).status

    def wait_container(self, cid, state, timeout):
        st = wait_for(lambda: (s := self.container_status(cid)).state == state and s, timeout, 0.1)
        if not st:
            st = self.container_status(cid)
            self.fail(f"container {cid[:12]} not {self.pb.ContainerState.Name(state)} within "
                      f"{timeout} s: {self.pb.ContainerState.Name(st.state)} reason={st.reason!r} "
                      f"message={st.message!r} exit_code={st.exit_code}")
        return st


class T7CRI(CRITestCase):
    def test_pod_lifecycle(self):
        pb = self.pb
        v = self.call("Version", pb.VersionRequest(version="v1"))
        print(f"\n    CRI Version: {v.runtime_name} {v.runtime_version} API {v.runtime_api_version}",
              end="", flush=True)
        self.assertEqual(v.runtime_api_version, "v1")

        for name in (HELLO, SLEEPER, PAUSE):
            import_image(image(name), ns=K8S_NS)
        def tags():  # the CRI plugin learns of imports from events, asynchronously
            return {t for i in self.img.ListImages(pb.ListImagesRequest(), timeout=TIMEOUT).images
                    for t in i.repo_tags}
        wait_for(lambda: {HELLO, SLEEPER, PAUSE} <= tags(), 5)
        for name in (HELLO, SLEEPER, PAUSE):
            self.assertIn(name, tags(), "CRI ListImages does not show an imported image")

        uid = str(uuid.uuid4())
        log_dir = os.path.join(WORK, "pod-logs", f"e2e_wasm-pod_{uid}")
        os.makedirs(log_dir, exist_ok=True)
        sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="wasm-pod", uid=uid, namespace="e2e", attempt=0),
            hostname="wasm-pod",
            log_directory=log_dir,
            labels={"app": "e2e"},
            annotations={"wasmlet.dev/test": "cri"},
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))),
        )
        start = time.monotonic()
        self.sandbox_id = self.call("RunPodSandbox", pb.RunPodSandboxRequest(
            config=sandbox_config, runtime_handler="wasmlet")).pod_sandbox_id
        print(f"\n    RunPodSandbox {time.monotonic() - start:.2f} s", end="", flush=True)
        ps = self.call("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=self.sandbox_id)).status
        self.assertEqual(ps.state, pb.SANDBOX_READY)
        self.assertEqual(ps.runtime_handler, "wasmlet")
        self.assertTrue(set(shim_pids()) - set(self.shims_before), "no wasmlet shim for the pod")

        def container(name, img, log_path):
            cfg = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=name, attempt=0),
                image=pb.ImageSpec(image=img),
                log_path=log_path,
                labels={"app": "e2e"},
                linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))),
            )
            cid = self.call("CreateContainer", pb.CreateContainerRequest(
                pod_sandbox_id=self.sandbox_id, config=cfg, sandbox_config=sandbox_config)).container_id
            self.container_ids.append(cid)
            self.call("StartContainer", pb.StartContainerRequest(container_id=cid))
            return cid

        # A container that runs to completion.
        hello = container("hello", HELLO, "hello/0.log")
        st = self.wait_container(hello, pb.CONTAINER_EXITED, 30)
        self.assertEqual((st.exit_code, st.reason), (0, "Completed"),
                         f"hello ended with {st.exit_code} {st.reason!r} {st.message!r}")
        log_file = os.path.join(log_dir, "hello", "0.log")
        self.assertEqual(st.log_path, log_file)
        lines = wait_for(lambda: [l for l in open(log_file).read().splitlines()
                                  if re.fullmatch(r"\S+ stdout F " + re.escape(HELLO_TEXT), l)], 5)
        self.assertTrue(lines, f"{log_file} lacks a CRI log line `<time> stdout F {HELLO_TEXT}`: "
                               f"{open(log_file).read()!r}")

        # A container that runs until stopped.
        sleeper = container("sleeper", SLEEPER, "sleeper/0.log")
        self.wait_container(sleeper, pb.CONTAINER_RUNNING, 10)
        sleeper_log = os.path.join(log_dir, "sleeper", "0.log")
        printed = wait_for(lambda: os.path.exists(sleeper_log) and "sleeping" in open(sleeper_log).read(), 5)
        self.assertTrue(printed, f"the running sleeper's `sleeping` line is not in {sleeper_log} "
                                 f"after 5 s: {open(sleeper_log).read() if os.path.exists(sleeper_log) else 'no file'!r}")
        start = time.monotonic()
        self.call("StopContainer", pb.StopContainerRequest(container_id=sleeper, timeout=5))
        stop_s = time.monotonic() - start
        st = self.wait_container(sleeper, pb.CONTAINER_EXITED, 2)
        print(f"\n    StopContainer(timeout=5) {stop_s:.2f} s, exit {st.exit_code} {st.reason!r}",
              end="", flush=True)
        self.assertLess(stop_s, 6.0, "StopContainer took longer than the grace period")
        self.assertIn(st.exit_code, (143, 137), "a stopped sleeper ends by SIGTERM (or SIGKILL)")

        # Teardown as kubelet does it.
        start = time.monotonic()
        self.call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id))
        print(f"\n    StopPodSandbox {time.monotonic() - start:.2f} s", end="", flush=True)
        for cid in self.container_ids:
            self.call("RemoveContainer", pb.RemoveContainerRequest(container_id=cid))
        self.call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id))
        self.container_ids, sandbox_id, self.sandbox_id = [], self.sandbox_id, None

        self.assertEqual(list(self.call("ListPodSandbox", pb.ListPodSandboxRequest()).items), [])
        self.assertEqual(list(self.call("ListContainers", pb.ListContainersRequest()).containers), [])
        gone = wait_for(lambda: set(shim_pids()) <= set(self.shims_before), 5)
        self.assertTrue(gone, f"wasmlet shims left: {sorted(set(shim_pids()) - set(self.shims_before))}")
        left = [m for m in mounts_under() if sandbox_id in m or "/k8s.io/" in m]
        self.assertEqual(left, [], "mounts left behind")


class PodNetworkCase(CRITestCase):
    """A pod on the pod network (the run's CNI bridge, scripts/e2e-containerd.sh): the shim
    binds the pod's wasmlet.dev/listen ports in the pod's network namespace, which CNI made."""

    def curl(self, ip, path="/", *flags):
        return run(["curl", "-sS", "--max-time", "10", *flags, f"http://{ip}:8080{path}"], timeout=15)

    def start_pod(self, name, container_image, annotations):
        """RunPodSandbox with `annotations`, then one container of `container_image`, started;
        returns (pod IP, container id, the container's log file)."""
        pb = self.pb
        for img_name in (container_image, PAUSE):
            import_image(image(img_name), ns=K8S_NS)
        self.netns_before = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
        uid = str(uuid.uuid4())
        log_dir = os.path.join(WORK, "pod-logs", f"e2e_{name}_{uid}")
        os.makedirs(log_dir, exist_ok=True)
        self.sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="e2e", attempt=0),
            hostname=name, log_directory=log_dir, labels={"app": "web"}, annotations=annotations,
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        )
        self.sandbox_id = self.call("RunPodSandbox", pb.RunPodSandboxRequest(
            config=self.sandbox_config, runtime_handler="wasmlet")).pod_sandbox_id
        status = self.call("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=self.sandbox_id)).status
        self.assertEqual(status.state, pb.SANDBOX_READY)
        ip = status.network.ip
        self.assertTrue(ip.startswith(os.environ.get("E2E_POD_SUBNET", "10.231.0.0/24").rsplit(".", 1)[0] + "."),
                        f"pod IP {ip!r} is not on the run's CNI bridge")
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="web", attempt=0), image=pb.ImageSpec(image=container_image),
            log_path="web/0.log", labels={"app": "web"},
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        )
        cid = self.call("CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=self.sandbox_id, config=cfg, sandbox_config=self.sandbox_config)).container_id
        self.container_ids.append(cid)
        self.call("StartContainer", pb.StartContainerRequest(container_id=cid))
        self.wait_container(cid, pb.CONTAINER_RUNNING, 10)
        return ip, cid, os.path.join(log_dir, "web", "0.log")

    def pod_netns(self):
        """The pod's network namespace path, from the sandbox's runtime spec in containerd's
        verbose PodSandboxStatus (what kubelet's debugging tools read)."""
        import json
        info = self.call("PodSandboxStatus", self.pb.PodSandboxStatusRequest(
            pod_sandbox_id=self.sandbox_id, verbose=True)).info
        spec = json.loads(info["info"])["runtimeSpec"]
        paths = [n.get("path") for n in spec["linux"]["namespaces"] if n["type"] == "network"]
        self.assertTrue(paths and paths[0], f"no network namespace path in the sandbox spec: {spec['linux']['namespaces']}")
        return paths[0]

    def stop_pod(self, ip, cid):
        """StopContainer, then the pod's teardown as kubelet does it; nothing may be left."""
        pb = self.pb
        self.call("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=5))
        status = self.wait_container(cid, pb.CONTAINER_EXITED, 10)
        refused = self.curl(ip)
        self.assertEqual(refused.rc, 7, f"the pod IP still answers (or did not refuse) after the stop\n{refused}")
        self.call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id))
        self.call("RemoveContainer", pb.RemoveContainerRequest(container_id=cid))
        self.call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id))
        self.container_ids, self.sandbox_id = [], None
        self.assertEqual(list(self.call("ListPodSandbox", pb.ListPodSandboxRequest()).items), [])
        gone = wait_for(lambda: set(shim_pids()) <= set(self.shims_before), 5)
        self.assertTrue(gone, f"wasmlet shims left: {sorted(set(shim_pids()) - set(self.shims_before))}")
        netns_after = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
        self.assertEqual(netns_after - self.netns_before, set(), "the pod's network namespace was left behind")
        return status


class T9PodNetwork(PodNetworkCase):
    """wasmlet.dev/listen=8080 on the pod: a curl from the host to the pod IP is answered by the
    httpd guest, which serves the pre-opened listener itself."""

    def test_pod_ip_serves(self):
        ip, cid, _ = self.start_pod("web-pod", HTTPD, {"wasmlet.dev/listen": "8080"})
        for _ in range(3):
            got = self.curl(ip)
            self.assertEqual(got.rc, 0, f"curl to the pod IP failed\n{got}")
            self.assertIn(HTTPD_TEXT, got.out, f"unexpected answer\n{got}")
        print(f"\n    curl http://{ip}:8080/ from the host: {got.out.strip()!r}", end="", flush=True)
        # Inside the pod's network namespace its own loopback is served too (as a probe from a
        # sidecar would be); the host's own loopback has no such listener.
        netns = self.pod_netns()
        inside = run(["nsenter", f"--net={netns}", "curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/"], timeout=15)
        self.assertEqual(inside.rc, 0, f"curl on the pod's loopback failed\n{inside}")
        self.assertIn(HTTPD_TEXT, inside.out)
        self.assertNotIn(HTTPD_TEXT, run(["curl", "-sS", "--max-time", "3", "http://127.0.0.1:8080/"]).out)
        self.stop_pod(ip, cid)


class T10PodHTTPTrigger(PodNetworkCase):
    """wasmlet.dev/trigger=http with wasmlet.dev/listen=8080 on the pod: wasmletd serves HTTP on
    the pod IP and runs a fresh instance of the wagi-probe module per request; the guest's stderr
    reaches the container's log (what `kubectl logs` reads); a trapping request is a 500 and the
    service goes on; StopContainer ends it with SIGTERM's code."""

    def test_pod_ip_serves_through_the_trigger(self):
        ip, cid, log_path = self.start_pod("wagi-pod", WAGI_PROBE, {
            "wasmlet.dev/listen": "8080", "wasmlet.dev/trigger": "http", "wasmlet.dev/http-max-concurrency": "4"})
        for _ in range(3):
            got = self.curl(ip, "/env?x=1")
            self.assertEqual(got.rc, 0, f"curl to the pod IP failed\n{got}")
            # A fresh instance per request: its static counter reads 1 every time.
            for line in ("counter=1", "REQUEST_METHOD=GET", "QUERY_STRING=x=1", "SERVER_PORT=8080", "PATH_INFO=/env"):
                self.assertIn(line, got.out.splitlines(), f"unexpected answer\n{got}")
        print(f"\n    curl http://{ip}:8080/env from the host: {got.out.splitlines()[0]!r} ...", end="", flush=True)
        trap = self.curl(ip, "/trap", "-o", "/dev/null", "-w", "%{http_code}")
        self.assertEqual(trap.out, "500", f"a trapping request\n{trap}")
        logged = self.curl(ip, "/stderr")
        self.assertEqual(logged.out, "logged\n", f"{logged}")
        in_log = wait_for(lambda: os.path.exists(log_path) and "probe wrote this to stderr" in open(log_path).read(), 10)
        self.assertTrue(in_log, f"the guest's stderr line is not in the container log {log_path}")
        status = self.stop_pod(ip, cid)
        self.assertEqual(status.exit_code, 143, f"the service's exit after StopContainer: {status}")


class T11ContainerdRestart(CRITestCase):
    OUTAGE = 1.0  # seconds containerd stays away (the fault's length, not a wait for a state)

    def test_guest_output_and_events_survive_a_containerd_crash(self):
        """A CRI container that writes a line every 20 ms; containerd is killed with SIGKILL (its
        FIFO readers, the CRI log pipeline, go with it), stays away OUTAGE s, and is started again.
        The guest must not block: its lines reach the container's log again after the restart.
        The shim's events must reach the new containerd: StopContainer is reported EXITED with
        the signal's code. Lines written while nobody could read them are counted and printed."""
        pb = self.pb
        for name in (TICKER, PAUSE):
            import_image(image(name), ns=K8S_NS)
        wait_for(lambda: {TICKER, PAUSE} <= {t for i in self.img.ListImages(pb.ListImagesRequest(), timeout=TIMEOUT).images
                                             for t in i.repo_tags}, 5)
        uid = str(uuid.uuid4())
        log_dir = os.path.join(WORK, "pod-logs", f"e2e_ticker-pod_{uid}")
        os.makedirs(log_dir, exist_ok=True)
        host = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
        sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="ticker-pod", uid=uid, namespace="e2e", attempt=0),
            hostname="ticker-pod", log_directory=log_dir,
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(namespace_options=host)))
        self.sandbox_id = self.call("RunPodSandbox", pb.RunPodSandboxRequest(
            config=sandbox_config, runtime_handler="wasmlet")).pod_sandbox_id
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="ticker", attempt=0), image=pb.ImageSpec(image=TICKER),
            log_path="ticker/0.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(namespace_options=host)))
        cid = self.call("CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=self.sandbox_id, config=cfg, sandbox_config=sandbox_config)).container_id
        self.container_ids.append(cid)
        self.call("StartContainer", pb.StartContainerRequest(container_id=cid))
        self.wait_container(cid, pb.CONTAINER_RUNNING, 10)
        log_file = os.path.join(log_dir, "ticker", "0.log")

        def ticks():
            text = open(log_file).read() if os.path.exists(log_file) else ""
            return [int(m.group(1)) for m in re.finditer(r" stdout F tick (\d+) failed-before \d+$", text, re.M)]

        self.assertTrue(wait_for(lambda: len(ticks()) >= 10, 10), f"no ticks in {log_file}")
        before = max(ticks())
        Containerd.kill9()
        down = time.monotonic()
        time.sleep(self.OUTAGE)
        Containerd.start()
        print(f"\n    containerd down {time.monotonic() - down:.2f} s", end="", flush=True)
        # The CRI plugin restores its containers and reopens their FIFOs; the guest's lines come
        # again, numbered past the outage.
        resumed = wait_for(lambda: [n for n in ticks() if n > before + int(self.OUTAGE / 0.02)], 20)
        all_ticks = ticks()
        self.assertTrue(resumed, f"no tick after the restart in {log_file}: last {all_ticks[-3:]}, "
                                 f"{before} before the crash; container {pb.ContainerState.Name(self.container_status(cid).state)}")
        seen = set(all_ticks)
        lost = [n for n in range(1, max(all_ticks) + 1) if n not in seen]
        print(f"\n    ticks: {before} before the crash, {len(lost)} written while containerd was away "
              f"did not reach the log, then {len([n for n in all_ticks if n > before])} more", end="", flush=True)
        self.assertEqual(self.container_status(cid).state, pb.CONTAINER_RUNNING)
        # Events: the stop goes through the new containerd and the shim's exit reaches it.
        self.call("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=5))
        st = self.wait_container(cid, pb.CONTAINER_EXITED, 10)
        self.assertIn(st.exit_code, (143, 137), f"exit after StopContainer: {st.exit_code} {st.reason!r}")
        self.call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id))
        self.call("RemoveContainer", pb.RemoveContainerRequest(container_id=cid))
        self.call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id))
        self.container_ids, self.sandbox_id = [], None
        gone = wait_for(lambda: set(shim_pids()) <= set(self.shims_before), 10)
        self.assertTrue(gone, f"wasmlet shims left: {sorted(set(shim_pids()) - set(self.shims_before))}")


ORDER = [T7CRI, T9PodNetwork, T10PodHTTPTrigger, T11ContainerdRestart]

