"""The walking skeleton end to end: `netkube up`, real kubectl, Services across nodes, teardown."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from netkube.config import ClusterConfig
from netkube.lab.records import Records, process_start_time
from tests.netns.hostsnap import diff, snapshot

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
NETKUBE = [sys.executable, "-m", "netkube.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: list[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


class Cluster:
    def __init__(self, cluster: ClusterConfig, state_root: str) -> None:
        self.cfg = cluster
        self.state_root = state_root

    def netkube(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*NETKUBE, "--state-root", self.state_root, *args], timeout=timeout, check=check)

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(
            ["kubectl", "--kubeconfig", str(self.cfg.kubeconfig_path),
             "--cache-dir", str(self.cfg.state_dir / "kubectl-cache"), *args],
            timeout=timeout, check=check, input=stdin,
        )

    def node_exec(self, node: str, *argv: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.netkube("node-exec", "--name", self.cfg.name, node, "--", *argv, timeout=timeout, check=check)

    def pod_exec(self, pod: str, *argv: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.netkube("exec", "--name", self.cfg.name, pod, "--", *argv, timeout=timeout, check=check)

    def pods(self, selector: str) -> list[dict]:
        out = self.kubectl("get", "pods", "-l", selector, "-o", "json").stdout
        return list(json.loads(out)["items"])

    def wait_ready(self, selector: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        pods: list[dict] = []
        while time.monotonic() < deadline:
            pods = [p for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp")]
            ready = [
                p for p in pods
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
            ]
            if len(ready) == count and len(pods) == count:
                return ready
            time.sleep(0.3)
        raise AssertionError(f"{selector}: wanted {count} Ready pods, have {[(p['metadata']['name'], p.get('status', {}).get('phase')) for p in pods]}")


def wait_answers(cluster: Cluster, url: str, timeout: float = 15) -> None:
    """Ready pods reach every node's kube-proxy a moment later (endpoints → slice → watch → sync),
    as on a real cluster: wait for the first answer before asserting on every request."""
    deadline = time.monotonic() + timeout
    while cluster.node_exec("node1", "curl", "-sS", "--max-time", "2", url, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{url} never answered from node1"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def host_before() -> dict[str, str]:
    return snapshot()


C = TypeVar("C", bound=Cluster)


@contextmanager
def live_cluster(prefix: str, *up_args: str, cls: type[C] = Cluster, check: bool = True,  # type: ignore[assignment]
                 up_timeout: float = 180, down_timeout: float = 60,
                 **cfg: Any) -> Iterator[tuple[C, subprocess.CompletedProcess[str]]]:
    """`netkube up` of a cluster of the test's own, its state root under /var/tmp (containers get a
    private /tmp). check: `up` must succeed (its output and the logs otherwise). On exit: `netkube
    down`, then whatever is still recorded is removed, whatever happened, and the state root."""
    state_root = tempfile.mkdtemp(prefix=f"netkube-{prefix}-", dir="/var/tmp")
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    config = ClusterConfig(name=name, api_port=free_port(), state_root=state_root, **cfg)
    c = cls(config, state_root)
    try:
        proc = run([*NETKUBE, "--state-root", state_root, "up", "--name", name, "--api-port", str(config.api_port),
                    *up_args], timeout=up_timeout, check=False)
        if check:
            assert proc.returncode == 0, f"netkube up failed:\n{proc.stdout}\n{proc.stderr}\n{_logs(config)}"
        yield c, proc
    finally:
        c.netkube("down", "--name", name, timeout=down_timeout, check=False)
        from netkube.lab.cleanup import remove_recorded

        remove_recorded(Records(config.records_path))
        shutil.rmtree(state_root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(host_before: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with live_cluster("e2e") as (c, proc):
        c.up_output = proc.stdout  # type: ignore[attr-defined]
        yield c


def _logs(cfg: ClusterConfig) -> str:
    out = []
    for f in sorted(cfg.log_dir.glob("*.log")) if cfg.log_dir.exists() else []:
        out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(out)


def test_up_reports_steps_and_nodes_are_ready(cluster: Cluster) -> None:
    out = cluster.up_output  # type: ignore[attr-defined]
    assert re.search(r"node agents on node1, node2, node3 \.\.\. done \(\d+\.\d+s\)", out)
    assert "cluster DNS" in out
    nodes = cluster.kubectl("get", "nodes").stdout
    lines = nodes.strip().splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = {row.split()[0]: row.split() for row in lines[1:]}
    assert set(rows) == {"node1", "node2", "node3"}
    assert all(r[1] == "Ready" for r in rows.values())
    assert rows["node1"][2] == "control-plane"
    taints = json.loads(cluster.kubectl("get", "node", "node1", "-o", "json").stdout)["spec"]["taints"]
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in [
        {k: t[k] for k in ("key", "effect")} for t in taints
    ]


def test_web_deployment_routes_through_cluster_ip(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "web.yaml"))
    pods = cluster.wait_ready("app=web", 3)
    nodes = {n["metadata"]["name"]: n for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    import ipaddress

    for p in pods:
        node = p["spec"]["nodeName"]
        assert node in ("node2", "node3"), "the control-plane node is tainted NoSchedule"
        cidr = ipaddress.ip_network(nodes[node]["spec"]["podCIDR"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidr
    assert {p["spec"]["nodeName"] for p in pods} == {"node2", "node3"}, "replicas spread over both workers"
    wide = cluster.kubectl("get", "pods", "-l", "app=web", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    for line in wide[1:]:
        cols = line.split()
        assert cols[1] == "1/1" and cols[2] == "Running" and cols[6] in ("node2", "node3")
    svc = cluster.kubectl("get", "svc", "web").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    cols = svc[1].split()
    assert cols[1] == "ClusterIP" and cols[4] == "8080/TCP"
    cluster_ip = cols[2]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(cluster.cfg.service_cidr)
    wait_answers(cluster, f"http://{cluster_ip}:8080/")
    body = cluster.node_exec("node1", "curl", "-sS", "--max-time", "5", f"http://{cluster_ip}:8080/").stdout
    assert body == "<html><body><h1>It works!</h1></body></html>\n"


def test_busybox_pod_reaches_service_by_ip_and_dns_name(cluster: Cluster) -> None:
    cluster.kubectl("run", "client", "--image=busybox", "--", "sleep", "3600")
    cluster.wait_ready("run=client", 1)
    cluster.wait_ready("app=web", 3)
    cluster_ip = json.loads(cluster.kubectl("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    out = cluster.pod_exec("client", "wget", "-qO-", f"http://{cluster_ip}:8080/").stdout
    assert "It works!" in out
    out = cluster.pod_exec("client", "wget", "-qO-", "http://web.default:8080/").stdout
    assert "It works!" in out
    ns = cluster.pod_exec("client", "nslookup", "web.default.svc.cluster.local").stdout
    assert cluster_ip in ns
    resolv = cluster.pod_exec("client", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {cluster.cfg.dns_service_ip}" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    assert cluster.pod_exec("client", "hostname").stdout.strip() == "client"


def test_kubectl_logs_and_exec_reach_the_pod_through_its_kubelet(cluster: Cluster) -> None:
    cluster.kubectl("run", "talker", "--image=busybox", "--", "sh", "-c", "echo hello from talker; sleep 3600")
    cluster.wait_ready("run=talker", 1)
    deadline = time.monotonic() + 10
    while "hello from talker" not in cluster.kubectl("logs", "talker").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.kubectl("logs", "talker").stdout == "hello from talker\n"
    assert cluster.kubectl("exec", "talker", "--", "hostname").stdout == "talker\n"
    proc = cluster.kubectl("exec", "talker", "--", "sh", "-c", "exit 3", check=False)
    assert proc.returncode == 3
    cluster.kubectl("delete", "pod", "talker", "--wait=false")


def test_requests_spread_over_every_agnhost_replica_and_nodeport(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "hostnames.yaml"))
    pods = cluster.wait_ready("app=hostnames", 3)
    names = {p["metadata"]["name"] for p in pods}
    svc = json.loads(cluster.kubectl("get", "svc", "hostnames", "-o", "json").stdout)
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    wait_answers(cluster, f"http://{ip}:80/hostname")
    seen: set[str] = set()
    for _ in range(30):
        seen.add(cluster.node_exec("node1", "curl", "-sS", "--max-time", "5", f"http://{ip}:80/hostname").stdout.strip())
    assert seen == names, f"30 requests reached {seen}, replicas are {names}"
    for node in cluster.cfg.node_names:
        node_ip = cluster.cfg.node_ip(node)
        got = cluster.node_exec("node1", "curl", "-sS", "--max-time", "5", f"http://{node_ip}:{node_port}/hostname").stdout.strip()
        assert got in names, f"NodePort {node_ip}:{node_port} answered {got!r}"


def test_cross_node_request_is_vxlan_on_the_wire(cluster: Cluster, tmp_path: Path) -> None:
    pods = cluster.wait_ready("app=web", 3)
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    client = cluster.pods("run=client")[0]
    target = next(p for n, p in by_node.items() if n != client["spec"]["nodeName"])
    pcap = tmp_path / "vx.pcap"
    src_node = client["spec"]["nodeName"]
    cap = subprocess.Popen(
        [*NETKUBE, "--state-root", cluster.state_root, "capture", "--name", cluster.cfg.name, f"node/{src_node}",
         "-i", "eth0", "-w", str(pcap), "-c", "4", "udp", "port", "8472"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)
        for _ in range(3):
            cluster.pod_exec("client", "wget", "-qO-", f"http://{target['status']['podIP']}:80/")
        cap.wait(timeout=15)
    finally:
        if cap.poll() is None:
            cap.terminate()
            cap.wait()
    text = run(["tcpdump", "-n", "-r", str(pcap)], check=False).stdout
    assert "UDP" in text or "VXLAN" in text or "8472" in text, text
    src_ip = cluster.cfg.node_ip(src_node)
    assert src_ip in text


def test_scale_moves_endpoints_and_iptables_within_2s(cluster: Cluster) -> None:
    def sep_chains(node: str) -> int:
        out = cluster.node_exec(node, "iptables-save", "-t", "nat").stdout
        return sum(1 for line in out.splitlines() if line.startswith(":KUBE-SEP-") and "default/web" in _sep_owner(out, line))

    def endpoints() -> int:
        ep = json.loads(cluster.kubectl("get", "endpoints", "web", "-o", "json").stdout)
        return sum(len(s.get("addresses", [])) for s in ep.get("subsets", []))

    for replicas in (5, 1):
        cluster.kubectl("scale", "deployment", "web", f"--replicas={replicas}")
        cluster.wait_ready("app=web", replicas, timeout=60)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            if endpoints() == replicas and all(sep_chains(n) == replicas for n in ("node1", "node2")):
                break
            time.sleep(0.1)
        assert endpoints() == replicas
        assert sep_chains("node1") == replicas, cluster.node_exec("node1", "iptables-save", "-t", "nat").stdout


def _sep_owner(dump: str, header: str) -> str:
    chain = header[1:].split()[0]
    for line in dump.splitlines():
        if line.startswith(f"-A {chain} "):
            return line
    return ""


def test_invalid_manifest_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    before = cluster.kubectl("get", "deploy,svc", "-o", "name").stdout
    bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: Bad_Name\nspec:\n  selector:\n    matchLabels: {app: x}\n  template:\n    metadata:\n      labels: {app: x}\n    spec:\n      containers: []\n"
    proc = cluster.kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert proc.returncode != 0
    assert "Invalid value" in proc.stderr or "is invalid" in proc.stderr, proc.stderr
    assert cluster.kubectl("get", "deploy,svc", "-o", "name").stdout == before
    assert cluster.kubectl("get", "nodes").returncode == 0  # still serving


def test_down_leaves_nothing_and_host_is_unchanged(cluster: Cluster, host_before: dict[str, str]) -> None:
    records = Records(cluster.cfg.records_path).live()
    netns = [r.data["name"] for r in records if r.kind == "netns"]
    procs = [r for r in records if r.kind == "process"]
    assert any("-pod-" in n for n in netns)
    cluster.netkube("down", "--name", cluster.cfg.name)
    existing = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
    assert not (set(netns) & existing), f"namespaces left: {set(netns) & existing}"
    alive = [p.data for p in procs if process_start_time(p.data["pid"]) == p.data["start"]]
    assert not alive, f"processes left: {alive}"
    assert not cluster.cfg.state_dir.exists()
    changed = diff(host_before, snapshot())
    assert not changed, f"host root namespace changed: {list(changed)}"


def test_sigkill_everything_then_clean(tmp_path: Path) -> None:
    state_root = tempfile.mkdtemp(prefix="netkube-e2e-", dir="/var/tmp")
    name = f"kill{uuid.uuid4().hex[:6]}"
    port = free_port()
    before = snapshot()
    proc = run([*NETKUBE, "--state-root", state_root, "up", "--name", name, "--nodes", "2", "--api-port", str(port)],
               timeout=180, check=False)
    cfg = ClusterConfig(name=name, nodes=2, api_port=port, state_root=state_root)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr + _logs(cfg)
        live = Records(cfg.records_path).live()
        procs = [r.data for r in live if r.kind == "process"]
        netns = [r.data["name"] for r in live if r.kind == "netns"]
        assert len(procs) >= 3
        for p in procs:
            if process_start_time(p["pid"]) == p["start"]:
                os.kill(p["pid"], 9)
        out = run([*NETKUBE, "--state-root", state_root, "clean"]).stdout
        assert name in out
        existing = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
        assert not (set(netns) & existing)
        assert not any(process_start_time(p["pid"]) == p["start"] for p in procs)
        changed = diff(before, snapshot())
        assert not changed, f"host root namespace changed: {list(changed)}"
    finally:
        from netkube.lab.cleanup import remove_recorded

        remove_recorded(Records(cfg.records_path))
        shutil.rmtree(state_root, ignore_errors=True)
