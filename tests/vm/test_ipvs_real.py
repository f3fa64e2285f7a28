"""ipvs mode on real IPVS (inside the VM): a node netns, three server netns, a client netns."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from proxy_modes.ipvs.desired import IpvsConfig
from proxy_modes.ipvs.proxier import IpvsProxier
from proxy_modes.kernel.ipset import RealIpset
from proxy_modes.kernel.iptables import RealIptables
from proxy_modes.kernel.ipvs import RealIpvs
from proxy_modes.kernel.links import RealLinks
from proxy_modes.kernel.sysctl import RealSysctl
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracker import ChangeTracker

pytestmark = pytest.mark.vm
# Address plan: node eth0 192.168.56.101 (client .200); pods on the node's bridge 10.244.0.0/24.
NODE_IP, CLIENT_IP = "192.168.56.101", "192.168.56.200"
PODS = ("10.244.0.11", "10.244.0.12", "10.244.0.13")
CIP, STICKY, NODE_PORT = "10.96.0.50", "10.96.0.60", 30080

SERVER = """
import socket, socketserver, sys
class H(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(sys.argv[1].encode() + b"\\n")
        while self.request.recv(100): pass   # hold the connection until the client closes it
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 8080), H).serve_forever()
"""
CLIENT = """
import socket, sys
for _ in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    print(s.makefile().readline().strip(), flush=True)
    s.close()
"""


def sh(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


@dataclass
class Lab:
    node: str
    client: str
    servers: list[str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def connect(self, ns: str, ip: str, port: int, n: int) -> list[str]:
        return sh("ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, ip, str(port), str(n)).split()


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = str(os.getpid())
    lab = Lab(f"vmnode-{tag}", f"vmclient-{tag}", [f"vmsrv{i}-{tag}" for i in range(3)])
    made: list[str] = []
    try:
        for ns in (lab.node, lab.client, *lab.servers):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        n = lab.node
        sh("ip", "-n", n, "link", "add", "cni0", "type", "bridge")
        sh("ip", "-n", n, "addr", "add", "10.244.0.1/24", "dev", "cni0")
        sh("ip", "-n", n, "link", "set", "cni0", "up")
        for i, (ns, ip) in enumerate(zip(lab.servers, PODS, strict=True)):
            sh("ip", "-n", n, "link", "add", f"veth{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", n, "link", "set", f"veth{i}", "master", "cni0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", "10.244.0.1")
            lab.procs.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, f"ep{i}"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
        sh("ip", "-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", lab.client)
        sh("ip", "-n", n, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        sh("ip", "-n", lab.client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        for ns in (n, lab.client):
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", n, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        time.sleep(1.5)  # servers listening
        yield lab
    finally:
        for p in lab.procs:
            p.kill()
            p.wait()
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def proxier(ns: str) -> IpvsProxier:
    cfg = IpvsConfig("node1", (NODE_IP,), "10.244.0.0/16", "10.96.0.0/12", "rr")
    return IpvsProxier(RealIpvs(ns), RealIpset(netns=ns), RealIptables(netns=ns), RealLinks(ns),
                       RealSysctl(ns), cfg)


def test_ipvs_mode_on_real_ipvs(lab: Lab) -> None:
    n = lab.node
    tr = ChangeTracker("node1")
    tr.on_service("ADDED", service("default", "web", CIP, [("http", 80, "TCP")], "NodePort", [NODE_PORT]))
    tr.on_endpoint_slice("ADDED", endpoint_slice("default", "web", list(PODS), [("http", 8080, "TCP")], node="node1"))
    tr.on_service("ADDED", service("default", "sticky", STICKY, [("http", 80, "TCP")], sessionAffinity="ClientIP"))
    tr.on_endpoint_slice("ADDED", endpoint_slice("default", "sticky", list(PODS), [("http", 8080, "TCP")]))
    p = proxier(n)
    try:
        p.sync(tr.snapshot(), full=True)
        listing = sh("ip", "netns", "exec", n, "ipvsadm", "-Ln")
        print(listing)
        assert f"TCP  {CIP}:80 rr" in listing and f"TCP  {STICKY}:80 rr persistent 10800" in listing
        assert f"TCP  {NODE_IP}:{NODE_PORT} rr" in listing
        for ip in PODS:
            assert f"-> {ip}:8080" in listing and "Masq" in listing
        assert sh("ip", "netns", "exec", n, "sysctl", "-n", "net.ipv4.vs.conntrack").strip() == "1"
        assert f"inet {CIP}/32" in sh("ip", "-n", n, "addr", "show", "kube-ipvs0")
        # rr: exact round robin over all three endpoints (from the node itself: masqueraded).
        got = lab.connect(n, CIP, 80, 6)
        assert sorted(got[:3]) == ["ep0", "ep1", "ep2"] and got[3:] == got[:3], got
        # ClientIP affinity: one endpoint for every connection of this client.
        assert len(set(lab.connect(n, STICKY, 80, 5))) == 1
        # NodePort from outside the node.
        assert sorted(lab.connect(lab.client, NODE_IP, NODE_PORT, 3)) == ["ep0", "ep1", "ep2"]

        # Graceful termination: hold a connection, remove its endpoint → weight 0, then drained.
        held = subprocess.Popen(["ip", "netns", "exec", n, sys.executable, "-c",
                                 "import socket,struct,sys\n"
                                 f"s=socket.create_connection(('{CIP}',80),timeout=5)\n"
                                 "print(s.makefile().readline().strip(),flush=True)\nsys.stdin.readline()\n"
                                 "s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0))\ns.close()\n"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert held.stdout is not None and held.stdin is not None
        gone = held.stdout.readline().strip()
        gone_ip = PODS[int(gone[2:])]
        keep = [ip for ip in PODS if ip != gone_ip]
        tr.on_endpoint_slice("MODIFIED", endpoint_slice("default", "web", keep, [("http", 8080, "TCP")], node="node1"))
        p.sync(tr.snapshot(), full=False)
        dests = {rs.address: rs for rs in p.ipvs.dests(next(v for v in p.ipvs.services() if v.address == CIP))}
        assert dests[gone_ip].weight == 0 and dests[gone_ip].active_conns == 1, dests
        assert set(lab.connect(n, CIP, 80, 4)) == {f"ep{PODS.index(ip)}" for ip in keep}  # no new ones
        held.stdin.write("\n")
        held.stdin.flush()
        held.wait(timeout=10)  # RST: IPVS moves the connection to CLOSE (10 s), then it expires
        deadline = time.monotonic() + 120  # TCG emulation is slow; each netns netlink socket forks
        while gone_ip in {rs.address for v in p.ipvs.services() if v.address == CIP for rs in p.ipvs.dests(v)}:
            conns = sh("ip", "netns", "exec", n, "ipvsadm", "-Lnc")
            assert time.monotonic() < deadline, f"real server never drained:\n{conns}"
            p.drain()
            time.sleep(2)
    finally:
        p.cleanup()
    # Cleanup removed kube-ipvs0, the virtual servers, our ipsets and iptables rules.
    assert subprocess.run(["ip", "-n", n, "link", "show", "kube-ipvs0"], capture_output=True).returncode != 0
    assert not [ln for ln in sh("ip", "netns", "exec", n, "ipvsadm", "-Ln").splitlines() if ln.startswith(("TCP", "UDP"))]
    assert "KUBE-" not in sh("ip", "netns", "exec", n, "ipset", "list", "-n")
    assert "KUBE-" not in sh("ip", "netns", "exec", n, "iptables-save")


def test_probe_finds_ipvs_in_the_vm() -> None:
    from proxy_modes.kernel.ipvs import probe

    assert probe() is None
    with socket.socket() as s:  # loopback works in the VM's root netns (sanity for the harness)
        s.bind(("127.0.0.1", 0))
