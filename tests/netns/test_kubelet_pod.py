"""A real pod sandbox + busybox containers through the kubelet, in namespaces this test creates."""

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from netkube.client import PODS
from netkube.config import ClusterConfig
from netkube.kubelet.cgroups import remove_cgroup
from netkube.kubelet.fakes import FakeImages
from netkube.kubelet.interfaces import CniFailure
from netkube.kubelet.kubelet import Kubelet
from netkube.kubelet.runtime import NSEXEC
from netkube.kubelet.sandbox import Timings
from netkube.lab.records import Records, process_start_time
from netkube.testing.fake_api import FakeApiClient

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
REF_CNI = "/usr/lib/cni"


class NodeNetnsCni:
    """Runs Debian's reference plugins inside the node netns, as the agent would from its own netns."""

    def __init__(self, node_netns: str) -> None:
        self.node_netns = node_netns

    async def _run(self, cmd: str, conflist: Path, cid: str, netns: str, args: dict[str, str]) -> dict:
        conf = json.loads(conflist.read_text())
        prev = None
        plugins = conf["plugins"] if cmd == "ADD" else list(reversed(conf["plugins"]))
        for p in plugins:
            net = dict(p, name=conf["name"], cniVersion=conf["cniVersion"])
            if prev:
                net["prevResult"] = prev
            env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
                   "CNI_PATH": REF_CNI, "CNI_ARGS": ";".join(f"{k}={v}" for k, v in args.items()),
                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            proc = await asyncio.create_subprocess_exec(
                "nsenter", f"--net=/run/netns/{self.node_netns}", f"{REF_CNI}/{p['type']}",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            out, err = await proc.communicate(json.dumps(net).encode())
            if proc.returncode:
                raise CniFailure(f"{p['type']} {cmd}: {out.decode()} {err.decode()}")
            if cmd == "ADD":
                prev = json.loads(out)
        return prev or {}

    async def add(self, conflist, container_id, netns_path, args):
        return await self._run("ADD", conflist, container_id, netns_path, args)

    async def delete(self, conflist, container_id, netns_path, args):
        await self._run("DEL", conflist, container_id, netns_path, args)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=check)


def nsexec(pid: int, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", NSEXEC, "--target", str(pid), "--", *argv],
                          capture_output=True, text=True, timeout=20)


@contextmanager
def kubelet_node(tmp_path: Path, name: str, subnet: str) -> Iterator[tuple[ClusterConfig, Records, str]]:
    """A node netns (`<name>-n`) with a bridge conflist for node2 on `subnet`. On exit it removes
    exactly what was recorded, newest first (processes by pid + start time, netns, cgroups), then
    the node netns."""
    cluster = ClusterConfig(name=name, nodes=2, state_root=str(tmp_path))
    records = Records(cluster.records_path)
    node_ns = f"{name}-n"
    sh("ip", "netns", "add", node_ns)
    try:
        sh("ip", "-n", node_ns, "link", "set", "lo", "up")
        netd = cluster.node_dir("node2") / "cni" / "net.d"
        netd.mkdir(parents=True)
        (netd / "10-test.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "cbr0",
            "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                         "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                                  "ranges": [[{"subnet": subnet}]]}}]}))
        yield cluster, records, node_ns
    finally:
        for rec in reversed(records.live()):
            if rec.kind == "process" and process_start_time(rec.data["pid"]) == rec.data["start"]:
                os.kill(rec.data["pid"], signal.SIGKILL)
            elif rec.kind == "netns" and os.path.exists(f"/run/netns/{rec.data['name']}"):
                sh("ip", "netns", "delete", rec.data["name"], check=False)
            elif rec.kind == "cgroup":  # the kubelet's pod cgroups (when this machine has them)
                remove_cgroup(rec.data["path"])
        sh("ip", "netns", "delete", node_ns, check=False)


@pytest.fixture
def lab(tmp_path):
    with kubelet_node(tmp_path, f"nkt-kubelet-{secrets.token_hex(2)}", "10.244.1.0/24") as node:
        yield node


async def until(pred, timeout=15.0):
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_real_pod_sandbox_and_containers(lab, tmp_path, request):
    cluster, records, node_ns = lab
    # Not under /tmp: every container gets its own private /tmp.
    www = Path(tempfile.mkdtemp(prefix="nkt-kubelet-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(www, ignore_errors=True))
    (www / "index.html").write_text("hello from netkube\n")
    images = FakeImages({"httpd": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", str(www)],
                         "sleeper": ["/bin/busybox", "sleep", "3600"]})
    api = FakeApiClient()
    kubelet = Kubelet(api, cluster, "node2", "192.168.56.102", records, cni=NodeNetnsCni(node_ns),
                      images=images, timings=Timings(max_grace=2))
    host_resolv = Path("/etc/resolv.conf").read_bytes()
    task = asyncio.create_task(kubelet.run())
    try:
        await asyncio.wait_for(kubelet.ready.wait(), 10)
        pod = await api.create(PODS, {"metadata": {"name": "web-0", "namespace": "default"}, "spec": {
            "nodeName": "node2", "containers": [{"name": "httpd", "image": "httpd"},
                                                {"name": "side", "image": "sleeper"}]}})
        uid = pod["metadata"]["uid"]
        get = lambda: api.objects(PODS, "default")  # noqa: E731
        await until(lambda: get() and get()[0].get("status", {}).get("phase") == "Running"
                    and all(c["ready"] for c in get()[0]["status"]["containerStatuses"]))
        ip = get()[0]["status"]["podIP"]
        state = json.loads((cluster.node_dir("node2") / "pods" / uid / "state.json").read_text())
        httpd, side = state["containers"]["httpd"]["pid"], state["containers"]["side"]["pid"]
        pod_ns = cluster.pod_netns(uid)

        assert f"inet {ip}/24" in sh("ip", "-n", pod_ns, "-4", "addr", "show", "eth0").stdout
        assert nsexec(httpd, "/bin/busybox", "hostname").stdout.strip() == "web-0"
        resolv = nsexec(side, "/bin/busybox", "cat", "/etc/resolv.conf").stdout
        assert "nameserver 10.96.0.10\n" in resolv and "search default.svc.cluster.local" in resolv
        assert f"{ip}\tweb-0" in nsexec(side, "/bin/busybox", "cat", "/etc/hosts").stdout
        assert Path("/etc/resolv.conf").read_bytes() == host_resolv
        # Private /tmp per container; exit codes pass through nsexec.
        assert nsexec(httpd, "/bin/busybox", "touch", "/tmp/healthy").returncode == 0
        assert nsexec(httpd, "/bin/busybox", "test", "-e", "/tmp/healthy").returncode == 0
        assert nsexec(side, "/bin/busybox", "test", "-e", "/tmp/healthy").returncode == 1
        assert not Path("/tmp/healthy").exists()
        assert nsexec(side, "/bin/busybox", "sh", "-c", "exit 7").returncode == 7
        assert nsexec(side, "/nonexistent").returncode == 127
        # HTTP from the node netns to the pod over cni0.
        got = sh("nsenter", f"--net=/run/netns/{node_ns}", "curl", "-s", "-m", "5",
                 f"http://{ip}:80/index.html")
        assert got.stdout == "hello from netkube\n"

        pids = [state["pause_pid"], httpd, side]
        await api.delete(PODS, "web-0", "default", grace_period=1)
        await until(lambda: not get())
        assert all(process_start_time(p) is None for p in pids)
        assert not os.path.exists(f"/run/netns/{pod_ns}")
        assert not (cluster.node_dir("node2") / "pods" / uid).exists()
        assert not [r for r in records.live() if r.kind in ("process", "netns")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
