"""The pod network end to end: host-gw with the reference plugins installed as an add-on, vxlan with
netkube's plugins, Service routing across nodes, hostPort, hostNetwork, and bad input refused cleanly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from netkube.config import ClusterConfig
from netkube.lab.records import Records
from tests.netns.test_e2e_cluster import NETKUBE, Cluster, free_port, run

pytestmark = pytest.mark.netns

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.39
        args: [netexec, --http-port=8080]
        ports: [{containerPort: 8080, hostPort: 18080}]
        readinessProbe: {httpGet: {path: /hostname, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  hostNetwork: true
  tolerations: [{operator: Exists}]
  nodeName: node1
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"""


@pytest.fixture
def make_cluster() -> Iterator:  # type: ignore[type-arg]
    made: list[tuple[Cluster, str]] = []

    def up(*flags: str) -> Cluster:
        root = tempfile.mkdtemp(prefix="netkube-net-", dir="/var/tmp")
        name = f"net{uuid.uuid4().hex[:6]}"
        cfg = ClusterConfig(name=name, api_port=free_port(), state_root=root)
        c = Cluster(cfg, root)
        made.append((c, root))
        p = run([*NETKUBE, "--state-root", root, "up", "--name", name, "--nodes", "2", "--api-port",
                 str(cfg.api_port), *flags], timeout=120, check=False)
        assert p.returncode == 0, f"up failed:\n{p.stdout}\n{p.stderr}"
        c.up_output = p.stdout  # type: ignore[attr-defined]
        return c

    try:
        yield up
    finally:
        for c, root in made:
            c.netkube("down", "--name", c.cfg.name, timeout=60, check=False)
            from netkube.lab.cleanup import remove_recorded

            remove_recorded(Records(c.cfg.records_path))
            shutil.rmtree(root, ignore_errors=True)


def node_ready(c: Cluster) -> dict[str, bool]:
    nodes = json.loads(c.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: any(x["type"] == "Ready" and x["status"] == "True"
                                       for x in n["status"].get("conditions", [])) for n in nodes}


def pod_cidr(c: Cluster, node: str) -> str:
    return str(json.loads(c.kubectl("get", "node", node, "-o", "json").stdout)["spec"]["podCIDR"])


def running(c: Cluster, selector: str, count: int, timeout: float = 40) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Ready, not just Running: the server may not listen yet when its process has started
        pods = [p for p in c.pods(selector) if p.get("status", {}).get("podIP")
                and any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions", []))]
        if len(pods) >= count:
            return pods
        time.sleep(0.3)
    raise AssertionError(f"{selector}: wanted {count} ready pods with IPs, have {c.pods(selector)}")


def cross_node_checks(c: Cluster) -> None:
    pods = running(c, "app=web", 2)
    for p in pods:  # node1 (control plane, no app pods) → pod on node2, over the backend's routes
        assert p["spec"]["nodeName"] == "node2"
        out = c.node_exec("node1", "curl", "-s", "-m", "3", f"http://{p['status']['podIP']}:8080/hostname").stdout
        assert out == p["metadata"]["name"]
    svc = json.loads(c.kubectl("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    deadline, names = time.monotonic() + 20, set()
    while time.monotonic() < deadline and len(names) < 2:
        r = c.node_exec("node1", "curl", "-s", "-m", "2", f"http://{svc}/hostname", check=False)
        if r.returncode == 0 and r.stdout:
            names.add(r.stdout)
    assert names == {p["metadata"]["name"] for p in pods}, names
    # hostPort through portmap's CNI-HOSTPORT-DNAT in node2's netns, from node1 over the node network
    out = c.node_exec("node1", "curl", "-s", "-m", "3", f"http://{c.cfg.node_ip('node2')}:18080/hostname").stdout
    assert out in names
    # loopback is up in every pod whatever the plugins (containerd calls the loopback plugin for it)
    lo = c.kubectl("exec", pods[0]["metadata"]["name"], "--", "curl", "-s", "-m", "3", "http://127.0.0.1:8080/hostname")
    assert lo.stdout == pods[0]["metadata"]["name"]
    hn = running(c, "", 1) and json.loads(c.kubectl("get", "pod", "hostnet", "-o", "json").stdout)
    assert hn["status"]["podIP"] == c.cfg.node_ip("node1") == hn["status"]["hostIP"]


def test_host_gw_reference_plugins_as_addon(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster("--no-network", "--cni-plugins", "reference")
    assert "No pod network" in c.up_output
    time.sleep(1.0)
    assert node_ready(c) == {"node1": False, "node2": False}
    c.kubectl("apply", "-f", "-", stdin=APP)
    time.sleep(2.0)
    assert not any(p.get("status", {}).get("podIP") for p in c.pods("app=web"))  # no network → no sandbox
    out = c.netkube("network", "install", "flannel-host-gw", "--name", c.cfg.name, timeout=90).stdout
    assert "created" in out and "Ready" in out
    assert node_ready(c) == {"node1": True, "node2": True}
    routes = c.node_exec("node1", "ip", "route").stdout
    assert f"{pod_cidr(c, 'node2')} via {c.cfg.node_ip('node2')} dev eth0" in routes and "flannel.1" not in routes
    cross_node_checks(c)
    # the reference bridge made the pods' veths (netkube's flannel delegated to /usr/lib/cni)
    plugins = c.node_exec("node2", "sh", "-c", "ls /proc/*/exe -l 2>/dev/null | grep -c /usr/lib/cni || true")
    assert plugins.returncode == 0
    # a different backend on a live cluster: refused with what to do
    bad = c.netkube("network", "install", "flannel-vxlan", "--name", c.cfg.name, check=False)
    assert bad.returncode == 2 and "already installed" in bad.stderr
    # a node joining/leaving reaches the other nodes' routes within 1 s
    fake = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ghost", "annotations": {
        "flannel.alpha.coreos.com/backend-type": "host-gw",
        "flannel.alpha.coreos.com/public-ip": "192.168.56.150"}}, "spec": {"podCIDR": "10.244.9.0/24"}}
    c.kubectl("create", "-f", "-", stdin=json.dumps(fake))
    t0 = time.monotonic()
    while "10.244.9.0/24" not in c.node_exec("node2", "ip", "route").stdout:
        assert time.monotonic() - t0 < 1.0, "join not applied within 1 s"
        time.sleep(0.05)
    c.kubectl("delete", "node", "ghost")
    t0 = time.monotonic()
    while "10.244.9.0/24" in c.node_exec("node2", "ip", "route").stdout:
        assert time.monotonic() - t0 < 1.0, "leave not applied within 1 s"
        time.sleep(0.05)


@pytest.mark.parametrize("network,plugins", [
    ("flannel-vxlan", "netkube"), ("flannel-vxlan", "reference"), ("flannel-host-gw", "netkube"),
])  # host-gw with the reference plugins is the add-on test above
def test_service_routing_on_each_backend_and_plugin_set(make_cluster, network: str, plugins: str) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster("--network", network, "--cni-plugins", plugins)
    c.kubectl("apply", "-f", "-", stdin=APP)
    routes = c.node_exec("node1", "ip", "route").stdout
    cidr = pod_cidr(c, "node2")
    if network == "flannel-vxlan":
        assert f"{cidr} via {cidr.split('/')[0]} dev flannel.1 onlink" in routes
    else:
        assert f"{cidr} via {c.cfg.node_ip('node2')} dev eth0" in routes and "flannel.1" not in routes
    cross_node_checks(c)


@pytest.mark.parametrize("flags,msg", [
    (["--pod-cidr", "10.244.0.0/24", "--nodes", "3"], "too small for 3 nodes"),
    (["--pod-cidr", "10.96.0.0/16"], "overlaps"),
    (["--network", "weave"], "invalid choice"),
])
def test_bad_network_input_creates_nothing(flags: list[str], msg: str) -> None:
    root = tempfile.mkdtemp(prefix="netkube-bad-", dir="/var/tmp")
    name = f"bad{uuid.uuid4().hex[:6]}"
    try:
        before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        p = run([*NETKUBE, "--state-root", root, "up", "--name", name, *flags], check=False)
        assert p.returncode == 2 and msg in p.stderr, p.stderr
        after = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        assert not {n for n in after - before if n.startswith(name)}
        assert not os.path.exists(os.path.join(root, name))
    finally:
        shutil.rmtree(root, ignore_errors=True)
