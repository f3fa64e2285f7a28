"""Root: real plugins through cni_add/cni_del in node namespaces, and pod traffic over flannel.1 vxlan."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cni.flannel import files
from cni.install import install_plugins

pytestmark = pytest.mark.netns
PY = sys.executable
ROOT = str(Path(__file__).resolve().parents[2])

# Runs inside a node netns (ip netns exec): the kubelet's side of CNI.
INVOKE = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from cni.invoke import cni_add, cni_del, load_conflist
from cni.spec import CniError
req = json.load(sys.stdin)
conf = load_conflist(req["conflist"])
fn = cni_add if req["cmd"] == "ADD" else cni_del
try:
    out = asyncio.run(fn(conf, [req["bin"]], req["id"], req["netns"], "eth0", {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": req["id"]}))
    print(json.dumps({"ok": out}))
except CniError as e:
    print(json.dumps({"err": [e.code, e.msg]}))
"""

# Runs inside a node netns: flannel's node setup + one reconcile from static node data.
FLANNEL = """
import json, sys, pathlib
sys.path.insert(0, sys.argv[1])
from cni.flannel.daemon import FlannelDaemon
from netkube.config import ClusterConfig
req = json.load(sys.stdin)
d = FlannelDaemon(None, ClusterConfig(), req["name"], req["ip"], pathlib.Path(req["dir"]))
d.pod_cidr = req.get("cidr")
if req["op"] == "setup":
    mac = d.setup_node(req["cidr"])
    assert d.setup_node(req["cidr"]) == mac  # idempotent on a live kernel
    print(json.dumps({"mac": mac, "ann": d.annotations(mac)}))
else:
    d.sync(req["nodes"])
    print("{}")
"""


def sh(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    p = subprocess.run(list(argv), capture_output=True, text=True, input=stdin, timeout=30)
    if check and p.returncode:
        raise AssertionError(f"{argv} failed: {p.stderr}{p.stdout}")
    return p.stdout


def nsx(ns: str, *argv: str, **kw) -> str:
    return sh("ip", "netns", "exec", ns, *argv, **kw)


class Lab:
    """Two node netns joined by a veth (192.168.56.101/.102), pod netns on demand; removes only its own."""

    def __init__(self) -> None:
        self.tag = "nkt-cni-" + os.urandom(3).hex()
        self.netns: list[str] = []
        self.dir = Path(tempfile.mkdtemp(prefix=self.tag + "-"))
        self.bin = self.dir / "bin"
        install_plugins(self.bin, PY)

    def ns(self, suffix: str) -> str:
        name = f"{self.tag}-{suffix}"
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        return name

    def nodes(self) -> tuple[str, str]:
        n1, n2 = self.ns("n1"), self.ns("n2")
        sh("ip", "-n", n1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n2)
        for ns, ip in ((n1, "192.168.56.101/24"), (n2, "192.168.56.102/24")):
            sh("ip", "-n", ns, "addr", "add", ip, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        return n1, n2

    def node_files(self, node: str, cidr: str, mtu: int = 1450) -> Path:
        d = self.dir / node
        files.write_atomic(d / "run/flannel/subnet.env", files.subnet_env("10.244.0.0/16", cidr, mtu))
        return files.write_conflist(d)

    def cni(self, node_ns: str, cmd: str, conflist: Path, cid: str, pod_ns: str) -> dict:
        req = {"cmd": cmd, "conflist": str(conflist), "bin": str(self.bin), "id": cid,
               "netns": f"/var/run/netns/{pod_ns}"}
        return json.loads(nsx(node_ns, PY, "-c", INVOKE, ROOT, stdin=json.dumps(req)))

    def close(self) -> None:
        for name in reversed(self.netns):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def lab():
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def test_bridge_pods_on_one_node_add_ping_del(lab: Lab) -> None:
    n1, _ = lab.nodes()
    conflist = lab.node_files("node1", "10.244.0.0/24")
    p1, p2 = lab.ns("p1"), lab.ns("p2")
    t0 = time.monotonic()
    r1 = lab.cni(n1, "ADD", conflist, "ctr1", p1)["ok"]
    add_ms = (time.monotonic() - t0) * 1000
    r2 = lab.cni(n1, "ADD", conflist, "ctr2", p2)["ok"]
    assert r1["ips"] == [{"address": "10.244.0.2/24", "gateway": "10.244.0.1", "interface": 2}]
    assert r2["ips"][0]["address"] == "10.244.0.3/24"
    names = [i["name"] for i in r1["interfaces"]]
    assert names[0] == "cni0" and names[1].startswith("veth") and len(names[1]) == 12 and names[2] == "eth0"
    assert r1["interfaces"][2]["sandbox"] == f"/var/run/netns/{p1}"
    # pod side: address, mtu, default route via the bridge gateway, lo up
    link = json.loads(sh("ip", "-j", "-n", p1, "addr", "show", "eth0"))[0]
    assert link["mtu"] == 1450 and any(a["local"] == "10.244.0.2" for a in link["addr_info"])
    routes = sh("ip", "-n", p1, "route")
    assert "default via 10.244.0.1 dev eth0" in routes and "10.244.0.0/16 via 10.244.0.1 dev eth0" in routes
    assert "UP" in json.loads(sh("ip", "-j", "-n", p1, "link", "show", "lo"))[0]["flags"]
    # node side: bridge holds the gateway, both ports with hairpin, forwarding on, masquerade chains
    assert "inet 10.244.0.1/24" in sh("ip", "-n", n1, "addr", "show", "cni0")
    ports = json.loads(sh("ip", "-n", n1, "-j", "-d", "link", "show", "master", "cni0"))
    assert {p["ifname"] for p in ports} == {r1["interfaces"][1]["name"], r2["interfaces"][1]["name"]}
    assert all(p["linkinfo"]["info_slave_data"]["hairpin"] for p in ports)
    assert nsx(n1, "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    nat = nsx(n1, "iptables-save", "-t", "nat")
    assert '-A POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: \\"cbr0\\" id: \\"ctr1\\"" -j CNI-' in nat
    assert '-d 10.244.0.0/24 -m comment --comment "name: \\"cbr0\\" id: \\"ctr1\\"" -j ACCEPT' in nat
    assert '! -d 224.0.0.0/4 -m comment --comment "name: \\"cbr0\\" id: \\"ctr1\\"" -j MASQUERADE' in nat
    nsx(p1, "/bin/busybox", "ping", "-c1", "-W2", "10.244.0.3")
    # DEL twice: idempotent, and nothing of the pods is left
    t0 = time.monotonic()
    assert lab.cni(n1, "DEL", conflist, "ctr1", p1) == {"ok": None}
    del_ms = (time.monotonic() - t0) * 1000
    print(f"\nADD {add_ms:.0f} ms, DEL {del_ms:.0f} ms (incl. ip netns exec + invoker interpreter)")
    assert lab.cni(n1, "DEL", conflist, "ctr1", p1) == {"ok": None}
    assert lab.cni(n1, "DEL", conflist, "ctr2", p2) == {"ok": None}
    sh("ip", "netns", "del", p2)
    lab.netns.remove(p2)
    assert lab.cni(n1, "DEL", conflist, "ctr2", p2) == {"ok": None}  # netns already gone
    assert json.loads(sh("ip", "-n", n1, "-j", "link", "show", "master", "cni0")) == []
    assert "CNI-" not in nsx(n1, "iptables-save", "-t", "nat")
    assert sorted(os.listdir(lab.dir / "node1/cni/networks/cbr0")) == ["last_reserved_ip.0", "lock"]
    assert os.listdir(lab.dir / "node1/cni/flannel") == []
    assert json.loads(sh("ip", "-j", "-n", p1, "link", "show"))[0]["ifname"] == "lo"
    assert len(json.loads(sh("ip", "-j", "-n", p1, "link", "show"))) == 1


def test_add_errors_are_reported(lab: Lab) -> None:
    n1, _ = lab.nodes()
    conflist = lab.node_files("node1", "10.244.0.0/24")
    (lab.dir / "node1/run/flannel/subnet.env").unlink()
    p1 = lab.ns("p1")
    err = lab.cni(n1, "ADD", conflist, "ctr1", p1)["err"]
    assert "failed to load flannel 'subnet.env' file" in err[1]
    lab.node_files("node1", "10.244.0.0/24")
    assert "ok" in lab.cni(n1, "ADD", conflist, "ctr1", p1)
    code, msg = lab.cni(n1, "ADD", conflist, "ctr2", p1)["err"]
    assert msg == "container veth name provided (eth0) already exists"


def test_pods_across_nodes_over_flannel_vxlan(lab: Lab) -> None:
    n1, n2 = lab.nodes()
    nodes = []
    for ns, name, ip, cidr in ((n1, "node1", "192.168.56.101", "10.244.0.0/24"),
                               (n2, "node2", "192.168.56.102", "10.244.1.0/24")):
        req = {"op": "setup", "name": name, "ip": ip, "dir": str(lab.dir / name), "cidr": cidr}
        out = json.loads(nsx(ns, PY, "-c", FLANNEL, ROOT, stdin=json.dumps(req)))
        nodes.append({"metadata": {"name": name, "annotations": out["ann"]}, "spec": {"podCIDR": cidr}})
        files.write_conflist(lab.dir / name)
    for ns, name, ip, cidr in ((n1, "node1", "192.168.56.101", "10.244.0.0/24"),
                               (n2, "node2", "192.168.56.102", "10.244.1.0/24")):
        req = {"op": "sync", "name": name, "ip": ip, "dir": str(lab.dir / name), "cidr": cidr, "nodes": nodes}
        nsx(ns, PY, "-c", FLANNEL, ROOT, stdin=json.dumps(req))
    d = json.loads(sh("ip", "-j", "-d", "-n", n1, "link", "show", "flannel.1"))[0]
    vx = d["linkinfo"]["info_data"]
    assert (vx["id"], vx["port"], vx["local"], vx["learning"], d["mtu"]) == (1, 8472, "192.168.56.101", False, 1450)
    assert "inet 10.244.0.0/32" in sh("ip", "-n", n1, "addr", "show", "flannel.1")
    mac2 = json.loads(nodes[1]["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"])["VtepMAC"]
    assert "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in sh("ip", "-n", n1, "route")
    assert f"10.244.1.0 lladdr {mac2} PERMANENT" in sh("ip", "-n", n1, "neigh", "show", "dev", "flannel.1")
    assert f"{mac2} dst 192.168.56.102 self permanent" in sh("bridge", "-n", n1, "fdb", "show", "dev", "flannel.1")
    pa, pb = lab.ns("pa"), lab.ns("pb")
    ra = lab.cni(n1, "ADD", lab.dir / "node1/cni/net.d/10-flannel.conflist", "ctra", pa)["ok"]
    rb = lab.cni(n2, "ADD", lab.dir / "node2/cni/net.d/10-flannel.conflist", "ctrb", pb)["ok"]
    assert ra["ips"][0]["address"] == "10.244.0.2/24" and rb["ips"][0]["address"] == "10.244.1.2/24"
    nsx(pa, "/bin/busybox", "ping", "-c1", "-W3", "10.244.1.2")
    nsx(pb, "/bin/busybox", "ping", "-c1", "-W3", "10.244.0.2")
    # node2 goes away: node1 drops its route, neighbour and FDB entry
    req = {"op": "sync", "name": "node1", "ip": "192.168.56.101", "dir": str(lab.dir / "node1"),
           "cidr": "10.244.0.0/24", "nodes": nodes[:1]}
    nsx(n1, PY, "-c", FLANNEL, ROOT, stdin=json.dumps(req))
    assert "flannel.1" not in sh("ip", "-n", n1, "route")
    assert sh("ip", "-n", n1, "neigh", "show", "dev", "flannel.1", "nud", "permanent").strip() == ""
    assert mac2 not in sh("bridge", "-n", n1, "fdb", "show", "dev", "flannel.1")
