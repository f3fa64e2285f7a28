"""CNI conformance: the SAME configs against netkube's plugins and Debian's reference plugins (/usr/lib/cni).

Each implementation gets its own node netns (so bridges and nat rules cannot mix) and runs exactly as a
runtime would: the plugin executable inside the node netns, env + stdin JSON. Differences the spec allows
are listed in docs/cni.md; everything else must match.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni.install import install_plugins

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                                 reason="needs containernetworking-plugins (scripts/setup installs it)")]
IMPLS = ("netkube", "reference")
SUBNET = "10.99.0.0/24"  # address plan: pods 10.99.0.2.., gateway 10.99.0.1, all inside test netns


class Node:
    """One node netns for one implementation; pod netns on demand; removes only what it made."""

    def __init__(self, impl: str, root: Path) -> None:
        self.impl = impl
        self.tag = f"nkc-{os.urandom(3).hex()}"
        self.dir = root / impl
        self.dir.mkdir()
        if impl == "netkube":
            self.bin = self.dir / "bin"
            install_plugins(self.bin, sys.executable)
        else:
            self.bin = Path("/usr/lib/cni")
        self.netns: list[str] = []
        self.name = self.ns("node")
        sh("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    def ns(self, suffix: str) -> str:
        name = f"{self.tag}-{suffix}"
        self.netns.append(name)  # recorded before it exists: the finalizer removes it even half-made
        sh("ip", "netns", "add", name)
        return name

    def close(self) -> None:
        for name in reversed(self.netns):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)

    def run(self, cmd: str, conf: dict[str, Any], cid: str = "", netns: str = "", ifname: str = "eth0",
            plugin: str | None = None) -> tuple[int, dict[str, Any]]:
        env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
               "CNI_PATH": str(self.bin), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        exe = str(self.bin / (plugin or conf["type"]))
        p = subprocess.run(["ip", "netns", "exec", self.name, exe], input=json.dumps(conf), env=env,
                           capture_output=True, text=True, timeout=60)
        out = p.stdout.strip()
        return p.returncode, (json.loads(out) if out else {})

    def x(self, *argv: str) -> str:
        return sh("ip", "netns", "exec", self.name, *argv)

    def conf(self, **over: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"cniVersion": "1.0.0", "name": "confnet", "type": "bridge", "bridge": "cni0",
                             "isGateway": True, "isDefaultGateway": True, "hairpinMode": True, "ipMasq": True,
                             "mtu": 1400,
                             "ipam": {"type": "host-local", "dataDir": str(self.dir / "ipam"),
                                      "ranges": [[{"subnet": SUBNET}]]}}
        c.update(over)
        return c


def sh(*argv: str) -> str:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if p.returncode:
        raise AssertionError(f"{argv}: {p.stderr}")
    return p.stdout


@pytest.fixture
def nodes() -> Iterator[dict[str, Node]]:
    root = Path(tempfile.mkdtemp(prefix="nkt-cniconf-", dir="/var/tmp"))
    made: dict[str, Node] = {}
    try:
        for impl in IMPLS:
            made[impl] = Node(impl, root)
        yield made
    finally:
        for n in made.values():
            n.close()
        shutil.rmtree(root, ignore_errors=True)


def normalize(result: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(result, sort_keys=True)
    text = re.sub(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", "MAC", text)
    text = re.sub(r'"veth[0-9a-f]+"', '"VETH"', text)
    text = re.sub(r'"/run/netns/nkc-[0-9a-f]+-', '"/run/netns/NS-', text)
    out: dict[str, Any] = json.loads(text)
    return out


def chained(node: Node, conf: dict[str, Any], prev: dict[str, Any] | None, ports: list[dict[str, Any]]) -> dict[str, Any]:
    pm: dict[str, Any] = {"cniVersion": "1.0.0", "name": "confnet", "type": "portmap",
                          "runtimeConfig": {"portMappings": ports}}
    if prev is not None:
        pm["prevResult"] = prev
    return pm


def pod_state(node: Node, pod: str) -> dict[str, Any]:
    addrs = json.loads(sh("ip", "netns", "exec", pod, "ip", "-j", "addr", "show", "eth0"))[0]
    routes = json.loads(sh("ip", "netns", "exec", pod, "ip", "-j", "route"))
    br = json.loads(node.x("ip", "-j", "addr", "show", "cni0"))[0]
    ports = json.loads(node.x("bridge", "-j", "-d", "link", "show"))
    nat = [ln for ln in node.x("iptables-save", "-t", "nat").splitlines() if ln[:1] in "-:" and "DOCKER" not in ln]
    ipam = node.dir / "ipam" / "confnet"
    files = {f.name: f.read_bytes() for f in sorted(ipam.iterdir())} if ipam.exists() else {}
    return {
        "pod_addrs": [(a["local"], a["prefixlen"]) for a in addrs["addr_info"] if a["family"] == "inet"],
        "pod_mtu": addrs["mtu"], "pod_up": "UP" in addrs["flags"],
        "pod_routes": sorted((r["dst"], r.get("gateway", "")) for r in routes),
        "bridge_addrs": [(a["local"], a["prefixlen"]) for a in br["addr_info"] if a["family"] == "inet"],
        "bridge_ports": sorted((p.get("master"), p.get("hairpin")) for p in ports),
        "nat": sorted(nat), "ipam_files": files,
        "ip_forward": node.x("cat", "/proc/sys/net/ipv4/ip_forward").strip(),
    }


def test_add_check_del_match_reference(nodes: dict[str, Node]) -> None:
    results, states, after = {}, {}, {}
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    for impl, n in nodes.items():
        pod = n.ns("pod")
        path = f"/run/netns/{pod}"
        rc, res = n.run("ADD", n.conf(), "ctr1", path)
        assert rc == 0, (impl, res)
        rc, res2 = n.run("ADD", chained(n, n.conf(), res, ports), "ctr1", path)
        assert rc == 0 and res2 == res, (impl, res2)  # portmap passes the result on unchanged
        results[impl], states[impl] = normalize(res), pod_state(n, pod)
        rc, err = n.run("CHECK", dict(n.conf(), prevResult=res), "ctr1", path)
        assert rc == 0, (impl, err)
        rc, err = n.run("CHECK", chained(n, n.conf(), res, ports), "ctr1", path)
        # reference portmap 1.1.1 CHECK also demands the ip6tables chain of an IPv4-only pod (docs/cni.md)
        assert rc == 0 or (impl == "reference" and "ipv6" in err["msg"]), (impl, err)
        for _ in range(2):  # DEL twice: idempotent
            for conf in (chained(n, n.conf(), res, ports), n.conf()):
                rc, err = n.run("DEL", conf, "ctr1", path)
                assert rc == 0, (impl, conf["type"], err)
        after[impl] = {"links": sh("ip", "netns", "exec", pod, "ip", "-o", "link").count("eth0"),
                       "nat": sorted(ln for ln in n.x("iptables-save", "-t", "nat").splitlines()
                                     if ln.startswith(("-A", ":CNI"))),
                       "ipam": sorted(f.name for f in (n.dir / "ipam" / "confnet").iterdir())}
    assert results["netkube"] == results["reference"]
    s = states["netkube"]
    assert s["pod_addrs"] == [("10.99.0.2", 24)] and s["pod_mtu"] == 1400 and s["pod_up"]
    assert ("default", "10.99.0.1") in s["pod_routes"]
    assert s["bridge_addrs"] == [("10.99.0.1", 24)] and s["ip_forward"] == "1"
    assert ("cni0", True) in s["bridge_ports"]  # hairpin on the pod's port
    assert s["ipam_files"]["10.99.0.2"] == b"ctr1\r\neth0" and s["ipam_files"]["last_reserved_ip.0"] == b"10.99.0.2"
    assert any("CNI-DN-" in ln and "--to-destination 10.99.0.2:80" in ln for ln in s["nat"])
    for key in s:
        assert states["netkube"][key] == states["reference"][key], key
    assert after["netkube"] == after["reference"]
    assert after["netkube"]["links"] == 0 and after["netkube"]["ipam"] == ["last_reserved_ip.0", "lock"]
    assert not any("CNI-DN-" in ln for ln in after["netkube"]["nat"])


def test_error_codes_match_reference(nodes: dict[str, Node]) -> None:
    codes: dict[str, list[Any]] = {}
    for impl, n in nodes.items():
        pod = n.ns("pod")
        got: list[Any] = []
        env_base = ["ip", "netns", "exec", n.name, str(n.bin / "bridge")]
        p = subprocess.run(env_base, input="{bad", capture_output=True, text=True,
                           env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": f"/run/netns/{pod}",
                                "CNI_IFNAME": "eth0", "CNI_PATH": str(n.bin)})
        got.append(("bad json", p.returncode != 0, json.loads(p.stdout)["code"]))
        rc, e = n.run("ADD", n.conf(cniVersion="9.9.9"), "c", f"/run/netns/{pod}")
        got.append(("version", rc != 0, e["code"], e["msg"]))
        rc, e = n.run("ADD", n.conf(promiscMode=True), "c", f"/run/netns/{pod}")
        got.append(("hairpin+promisc", rc != 0, e["msg"]))
        rc, e = n.run("CHECK", dict(n.conf(cniVersion="0.3.1"), prevResult={}), "c", f"/run/netns/{pod}")
        got.append(("check<0.4", rc != 0, e["code"], e["msg"]))
        rc, e = n.run("ADD", n.conf(), "c", "/run/netns/nkc-does-not-exist")
        got.append(("missing netns", rc != 0, "nkc-does-not-exist" in e["msg"]))
        rc, _ = n.run("DEL", n.conf(), "c", "/run/netns/nkc-does-not-exist")
        got.append(("del missing netns", rc))
        assert not (n.dir / "ipam" / "confnet" / "10.99.0.2").exists(), "a failed ADD left an address"
        codes[impl] = got
    assert codes["netkube"] == codes["reference"]
    assert codes["netkube"][0] == ("bad json", True, 6) and codes["netkube"][1][2] == 1


def test_host_local_ranges_gateway_and_exhaustion_match(nodes: dict[str, Node]) -> None:
    seqs: dict[str, list[Any]] = {}
    for impl, n in nodes.items():
        ipam = {"type": "host-local", "dataDir": str(n.dir / "ipam"),
                "ranges": [[{"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.9", "rangeEnd": "10.99.0.12",
                             "gateway": "10.99.0.10"}]]}
        conf = {"cniVersion": "1.0.0", "name": "confnet", "type": "host-local", "ipam": ipam}
        seq: list[Any] = []
        for i in range(4):
            rc, res = n.run("ADD", conf, f"c{i}", "/run/netns/x")
            seq.append(res["ips"][0]["address"] if rc == 0 else (res["code"], res["msg"]))
        rc, _ = n.run("DEL", conf, "c1", "/run/netns/x")
        rc, res = n.run("ADD", conf, "c9", "/run/netns/x")
        seq.append(res["ips"][0]["address"])  # round robin continues after the last reserved, then wraps
        seqs[impl] = seq
    assert seqs["netkube"] == seqs["reference"]
    assert seqs["netkube"][:3] == ["10.99.0.9/24", "10.99.0.11/24", "10.99.0.12/24"]
    assert seqs["netkube"][3][1] == ("failed to allocate for range 0: no IP addresses available in range set: "
                                     "10.99.0.9-10.99.0.12")


@pytest.mark.parametrize("impl", IMPLS)
def test_100_concurrent_adds_get_distinct_addresses(nodes: dict[str, Node], impl: str) -> None:
    n = nodes[impl]
    pods = [n.ns(f"p{i}") for i in range(100)]
    conf = n.conf(ipMasq=False)

    def one(i: int, cmd: str) -> tuple[int, dict[str, Any]]:
        return n.run(cmd, conf, f"ctr{i}", f"/run/netns/{pods[i]}")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        adds = list(pool.map(lambda i: one(i, "ADD"), range(100)))
        assert all(rc == 0 for rc, _ in adds), [r for r in adds if r[0]][:2]
        ips = {r["ips"][0]["address"] for _, r in adds}
        assert len(ips) == 100
        dels = list(pool.map(lambda i: one(i, "DEL"), range(100)))
    assert all(rc == 0 for rc, _ in dels)
    left = sorted(f.name for f in (n.dir / "ipam" / "confnet").iterdir())
    assert left == ["last_reserved_ip.0", "lock"]


def test_status_and_gc_netkube_only(nodes: dict[str, Node]) -> None:
    """Spec 1.1 STATUS and GC (Debian's plugins 1.1.1 stop at spec 1.0.0; see docs/cni.md)."""
    n = nodes["netkube"]
    pods = [n.ns("a"), n.ns("b")]
    conf = n.conf(cniVersion="1.1.0")
    for i, pod in enumerate(pods):
        assert n.run("ADD", conf, f"k{i}", f"/run/netns/{pod}")[0] == 0
    assert n.run("STATUS", conf)[0] == 0
    rc, e = n.run("STATUS", n.conf(cniVersion="1.0.0"))
    assert rc == 1 and e["code"] == 1
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "k1", "ifname": "eth0"}]})
    assert n.run("GC", gc)[0] == 0
    ipam = sorted(f.name for f in (n.dir / "ipam" / "confnet").iterdir())
    assert ipam == ["10.99.0.3", "last_reserved_ip.0", "lock"]
    nat = n.x("iptables-save", "-t", "nat")
    assert "id: \\\"k0\\\"" not in nat and "id: \\\"k1\\\"" in nat
