"""`netkube up --runtime docker`: pods as Docker containers (pause + app containers in the netns CNI
wired), put through the same Service routing, kubectl logs/exec and restart checks as the process
runtime. Skipped, with the reason, only when dockerd cannot start on this machine."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netkube.config import ClusterConfig
from netkube.lab.records import Records, process_start_time
from tests.netns.hostsnap import diff, snapshot
from tests.netns.test_e2e_cluster import EXAMPLES, Cluster, _logs, live_cluster, run, wait_answers

pytestmark = pytest.mark.netns

ENGINE_FAILURES = ("dockerd exited during start-up", "dockerd did not answer", "dockerd is not installed")


def _engine_missing() -> str:
    if shutil.which("dockerd") is None or shutil.which("containerd") is None:
        return "dockerd/containerd not installed (Debian's docker.io; `sudo scripts/setup` installs it)"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "Python package docker not installed (`sudo scripts/setup` installs it)"
    if not Path("/bin/busybox").exists():
        return "busybox-static not installed (needed to build the netkube/busybox image)"
    return ""


@pytest.fixture(scope="module")
def host_before() -> dict[str, str]:
    return snapshot()


@pytest.fixture(scope="module")
def cluster(host_before: dict[str, str]) -> Iterator[Cluster]:
    missing = _engine_missing()
    if missing:
        pytest.skip(f"docker runtime cannot run here: {missing}")
    with live_cluster("dock", "--runtime", "docker", check=False, up_timeout=240, down_timeout=90,
                      runtime="docker") as (c, proc):
        if proc.returncode != 0 and any(m in proc.stderr for m in ENGINE_FAILURES):
            pytest.skip(f"dockerd cannot start on this machine: {proc.stderr.strip()[-600:]}")
        assert proc.returncode == 0, f"netkube up failed:\n{proc.stdout}\n{proc.stderr}\n{_logs(c.cfg)}"
        c.up_output = proc.stdout  # type: ignore[attr-defined]
        yield c


def _docker(c: Cluster) -> Any:
    import docker

    cfg = ClusterConfig.load(c.cfg.name, c.state_root)  # up wrote the engine's address there
    return docker.DockerClient(base_url=cfg.docker_host, timeout=30)


def _containers(c: Cluster, pod: str) -> dict[str, dict[str, Any]]:
    """The pod's containers by container name (POD = the pause), inspected."""
    client = _docker(c)
    try:
        out = {}
        for ct in client.api.containers(filters={"label": f"netkube.cluster={c.cfg.name}"}):
            info = client.api.inspect_container(ct["Id"])
            what = info["Config"]["Labels"]["netkube.what"]
            kind, _, path = what.partition(" ")
            parts = path.split("/")
            if parts[1] == pod:
                out["POD" if kind == "pause" else parts[2]] = info
        return out
    finally:
        client.close()


def _inode(path: str) -> int:
    return os.stat(path).st_ino


def test_engine_is_the_clusters_own_and_image_is_built_from_scratch(cluster: Cluster) -> None:
    assert "Docker engine and image netkube/busybox" in cluster.up_output  # type: ignore[attr-defined]
    engines = [r for r in Records(cluster.cfg.records_path).live()
               if r.kind == "process" and r.data.get("what") == "dockerd"]
    assert len(engines) == 1 and process_start_time(engines[0].data["pid"]) == engines[0].data["start"]
    argv = Path(f"/proc/{engines[0].data['pid']}/cmdline").read_bytes().split(b"\0")
    for flag in (b"--iptables=false", b"--ip6tables=false", b"--bridge=none", b"--ip-forward=false"):
        assert flag in argv, argv
    client = _docker(cluster)
    try:
        image = client.images.get("netkube/busybox:latest")
        assert len(image.attrs["RootFS"]["Layers"]) == 1, "FROM scratch plus one COPY layer"
        assert image.attrs["Config"]["Cmd"] == ["sh"]
        out = client.containers.run("netkube/busybox", ["sh", "-c", "busybox | head -1; ls /usr/local/apache2/htdocs"],
                                    network_mode="none", remove=True)
        assert b"BusyBox" in out and b"index.html" in out
    finally:
        client.close()


def test_pod_is_a_pause_container_whose_netns_cni_wired(cluster: Cluster) -> None:
    dns = json.loads(cluster.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o",
                                     "json").stdout)["items"]
    dns = [p for p in dns if p.get("status", {}).get("podIP")]
    assert dns, "up waited for a coredns pod with an IP"
    pod = dns[0]["metadata"]["name"]
    cts = _containers(cluster, pod)
    assert set(cts) == {"POD", "coredns"}, list(cts)
    pause, app = cts["POD"], cts["coredns"]
    assert pause["HostConfig"]["NetworkMode"] == "none"
    assert app["HostConfig"]["NetworkMode"] == f"container:{pause['Id']}"
    assert app["HostConfig"]["IpcMode"] == f"container:{pause['Id']}"
    netns = f"/run/netns/{cluster.cfg.pod_netns(dns[0]['metadata']['uid'])}"
    assert _inode(f"/proc/{pause['State']['Pid']}/ns/net") == _inode(netns)
    assert _inode(f"/proc/{app['State']['Pid']}/ns/net") == _inode(netns)
    assert _inode(f"/proc/{app['State']['Pid']}/ns/pid") != _inode("/proc/self/ns/pid"), "own pid namespace"
    addrs = run(["ip", "-n", os.path.basename(netns), "-o", "-4", "addr", "show", "eth0"]).stdout
    assert dns[0]["status"]["podIP"] in addrs


def test_web_deployment_routes_through_cluster_ip_node_port_and_dns(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "web.yaml"))
    cluster.kubectl("expose", "deployment", "web", "--name=web-np", "--type=NodePort", "--port=8080",
                    "--target-port=80")
    pods = cluster.wait_ready("app=web", 3, timeout=90)
    assert {p["spec"]["nodeName"] for p in pods} <= {"node2", "node3"}
    for p in pods:
        assert set(_containers(cluster, p["metadata"]["name"])) == {"POD", "httpd"}
    svc = json.loads(cluster.kubectl("get", "svc", "web", "-o", "json").stdout)
    cluster_ip = svc["spec"]["clusterIP"]
    wait_answers(cluster, f"http://{cluster_ip}:8080/")
    for _ in range(5):
        body = cluster.node_exec("node1", "curl", "-sS", "--max-time", "5", f"http://{cluster_ip}:8080/").stdout
        assert body == "<html><body><h1>It works!</h1></body></html>\n"
    node_port = json.loads(cluster.kubectl("get", "svc", "web-np", "-o", "json").stdout)["spec"]["ports"][0]["nodePort"]
    for node in cluster.cfg.node_names:
        url = f"http://{cluster.cfg.node_ip(node)}:{node_port}/"
        assert "It works!" in cluster.node_exec("node1", "curl", "-sS", "--max-time", "5", url).stdout
        assert "It works!" in cluster.netkube("client", "--name", cluster.cfg.name, "--", "curl", "-sS", "--max-time",
                                              "5", url).stdout
    cluster.kubectl("run", "client", "--image=busybox", "--", "sleep", "3600")
    cluster.wait_ready("run=client", 1)
    assert "It works!" in cluster.kubectl("exec", "client", "--", "wget", "-qO-", f"http://{cluster_ip}:8080/").stdout
    assert "It works!" in cluster.kubectl("exec", "client", "--", "wget", "-qO-", "http://web.default:8080/").stdout
    ns = cluster.kubectl("exec", "client", "--", "nslookup", "web.default.svc.cluster.local").stdout
    assert cluster_ip in ns
    assert cluster.kubectl("exec", "client", "--", "hostname").stdout == "client\n"
    resolv = cluster.kubectl("exec", "client", "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {cluster.cfg.dns_service_ip}" in resolv
    assert "It works!" in cluster.pod_exec("client", "wget", "-qO-", f"http://{cluster_ip}:8080/").stdout


def test_requests_spread_over_every_agnhost_container(cluster: Cluster) -> None:
    # netkube's Python images run in the busybox image with the host's Python bound read-only.
    cluster.kubectl("apply", "-f", str(EXAMPLES / "hostnames.yaml"))
    pods = cluster.wait_ready("app=hostnames", 3, timeout=90)
    names = {p["metadata"]["name"] for p in pods}
    svc = json.loads(cluster.kubectl("get", "svc", "hostnames", "-o", "json").stdout)
    ip = svc["spec"]["clusterIP"]
    wait_answers(cluster, f"http://{ip}:80/hostname")
    seen: set[str] = set()
    for _ in range(30):
        seen.add(cluster.node_exec("node1", "curl", "-sS", "--max-time", "5", f"http://{ip}:80/hostname").stdout.strip())
        if seen == names:
            break
    assert seen == names, f"requests reached {seen}, replicas are {names}"


def test_logs_exec_probe_and_restart(cluster: Cluster) -> None:
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"containers": [{
            "name": "talker", "image": "busybox",
            "command": ["sh", "-c", "echo hello from talker; echo oops >&2; sleep 3600"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
        }]},
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    deadline = time.monotonic() + 60
    while cluster.kubectl("get", "pod", "talker", "-o", "jsonpath={.status.phase}").stdout != "Running":
        assert time.monotonic() < deadline, "talker never ran"
        time.sleep(0.3)
    time.sleep(2)
    ready = cluster.kubectl("get", "pod", "talker", "-o", "jsonpath={.status.containerStatuses[0].ready}").stdout
    assert ready == "false", "the exec readiness probe fails until /tmp/ready exists"
    cluster.kubectl("exec", "talker", "--", "touch", "/tmp/ready")
    deadline = time.monotonic() + 20
    while cluster.kubectl("get", "pod", "talker", "-o", "jsonpath={.status.containerStatuses[0].ready}").stdout != "true":
        assert time.monotonic() < deadline, "the probe never saw /tmp/ready (exec_in in the container)"
        time.sleep(0.3)
    # stdout and stderr are two pipes inside the engine: their order across streams is not kept
    logs = cluster.kubectl("logs", "talker").stdout
    assert sorted(logs.splitlines()) == ["hello from talker", "oops"], logs
    assert cluster.kubectl("exec", "talker", "--", "hostname").stdout == "talker\n"
    assert cluster.kubectl("exec", "talker", "--", "sh", "-c", "exit 3", check=False).returncode == 3
    # exec ran in the container's own filesystem: the engine sees the new file in its layer.
    client = _docker(cluster)
    try:
        changes = client.api.diff(_containers(cluster, "talker")["talker"]["Id"])
    finally:
        client.close()
    assert {"Path": "/tmp/ready", "Kind": 1} in changes, changes

    cluster.kubectl("run", "crasher", "--image=busybox", "--", "sh", "-c", "echo run; exit 3")
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = json.loads(cluster.kubectl("get", "pod", "crasher", "-o", "json").stdout)
        status = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
        if status.get("restartCount", 0) >= 1 and "terminated" in status.get("lastState", {}):
            break
        time.sleep(0.5)
    assert status.get("restartCount", 0) >= 1, status
    assert status["lastState"]["terminated"]["exitCode"] == 3, status
    assert status["lastState"]["terminated"]["reason"] == "Error", status
    assert cluster.kubectl("logs", "crasher", "--previous").stdout == "run\n"


def test_deleted_pod_leaves_no_container_or_netns(cluster: Cluster) -> None:
    pod = json.loads(cluster.kubectl("get", "pod", "talker", "-o", "json").stdout)
    netns = cluster.cfg.pod_netns(pod["metadata"]["uid"])
    assert set(_containers(cluster, "talker")) == {"POD", "talker"}
    cluster.kubectl("delete", "pod", "talker", "--grace-period=1", timeout=60)
    deadline = time.monotonic() + 20
    while _containers(cluster, "talker") or os.path.exists(f"/run/netns/{netns}"):
        assert time.monotonic() < deadline, (list(_containers(cluster, "talker")), netns)
        time.sleep(0.3)


def test_down_stops_the_engine_and_leaves_host_unchanged(cluster: Cluster, host_before: dict[str, str]) -> None:
    records = Records(cluster.cfg.records_path).live()
    procs = [r for r in records if r.kind == "process"]
    netns = [r.data["name"] for r in records if r.kind == "netns"]
    assert any(p.data.get("what") == "dockerd" for p in procs)
    exec_root = f"/run/netkube-docker/{cluster.cfg.name}"
    cluster.netkube("down", "--name", cluster.cfg.name, timeout=90)
    alive = [p.data for p in procs if process_start_time(p.data["pid"]) == p.data["start"]]
    assert not alive, f"processes left: {alive}"
    shims = [p for p in os.listdir("/proc") if p.isdigit() and exec_root.encode() in _cmdline(p)]
    assert not shims, f"containerd shims left: {shims}"
    mounts = Path("/proc/self/mounts").read_text()
    assert exec_root not in mounts and cluster.state_root not in mounts
    existing = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert not (set(netns) & existing)
    assert not os.path.exists(exec_root) and not cluster.cfg.state_dir.exists()
    changed = diff(host_before, snapshot())
    assert not changed, f"host root namespace changed: {list(changed)}"


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
