"""Real iptables-restore in a fresh node namespace: read back, trace, and connect through a ClusterIP."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from proxy_modes.iptables.cleanup import cleanup
from proxy_modes.iptables.proxier import IptablesProxier
from proxy_modes.iptables.render import RenderConfig
from proxy_modes.kernel.iptables import RealIptables
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet, Tracer
from proxy_modes.tracker import ChangeTracker

# Address plan inside our own namespaces only: node "eth" 10.180.0.254/24 ↔ pod 10.180.0.1/24,
# service 172.30.0.41:80 → pod port 8080; cluster CIDR 10.244.0.0/16 (the node is off-cluster).
NODE_SIDE, POD_IP, SVC_IP = "10.180.0.254", "10.180.0.1", "172.30.0.41"


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=20).stdout


def host_rules() -> str:
    # Drop the timestamp comments and counters; everything else must be byte-identical.
    out = []
    for table in ("filter", "nat", "mangle"):
        out += [ln for ln in sh("iptables-save", "-t", table).splitlines() if not ln.startswith("#")]
    return "\n".join(out)


@pytest.fixture
def lab() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    node, pod = f"nkt-proxy-{tag}", f"nkt-proxy-{tag}p"
    made: list[str] = []
    try:
        for ns in (node, pod):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # veth created inside the node namespace directly: the host root namespace never holds it.
        sh("ip", "-n", node, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "-n", node, "addr", "add", f"{NODE_SIDE}/24", "dev", "eth1")
        sh("ip", "-n", pod, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth1", "up")
        sh("ip", "-n", pod, "link", "set", "eth0", "up")
        # Locally generated packets are routed before nat OUTPUT runs: the ClusterIP range needs a
        # route, as a default route provides on a real node.
        sh("ip", "-n", node, "route", "add", "172.30.0.0/16", "dev", "eth1")
        yield node, pod
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


@pytest.mark.netns
def test_real_rules_trace_and_dnat(lab: tuple[str, str]) -> None:
    node, pod = lab
    before = host_rules()
    server = subprocess.Popen(
        ["ip", "netns", "exec", pod, sys.executable, "-c",
         "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         f"s.bind(('{POD_IP}',8080));s.listen()\nwhile True:\n c,a=s.accept();c.sendall(('hello from '+a[0]).encode());c.close()"],
    )
    try:
        ipt = RealIptables(netns=node)
        t = ChangeTracker("node1")
        t.on_service("ADDED", service("ns1", "svc1", SVC_IP, ports=[("p80", 80, "TCP")]))
        slice_ = endpoint_slice("ns1", "svc1", [POD_IP], ports=[("p80", 8080, "TCP")])
        t.on_endpoint_slice("ADDED", slice_)
        px = IptablesProxier(ipt, RenderConfig("node1", (NODE_SIDE,)))
        px.sync(t.snapshot(), full=True)
        px.sync(t.snapshot(), full=True)  # idempotent: jumps not duplicated
        saved = ipt.save("nat") + ipt.save("filter")
        assert saved.count("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES") == 1
        assert "-A KUBE-SVC-XPGD46QRK7WJZT7O ! -s 10.244.0.0/16 -d 172.30.0.41/32 -p tcp" in saved

        r = Tracer(saved).trace(Packet(NODE_SIDE, SVC_IP, 80, "tcp", None, local_ips=(NODE_SIDE,)))
        assert r.targets() == {f"{POD_IP}:8080": 1.0} and r.masquerade

        reply = b""
        for _ in range(50):  # the server may need a moment to bind
            try:
                reply = subprocess.run(
                    ["ip", "netns", "exec", node, sys.executable, "-c",
                     f"import socket;s=socket.create_connection(('{SVC_IP}',80),timeout=2);print(s.recv(100).decode())"],
                    capture_output=True, timeout=10, check=True).stdout
                break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        # The pod saw the node's address as source (masqueraded by KUBE-POSTROUTING).
        assert reply.strip() == f"hello from {NODE_SIDE}".encode()

        # Endpoint gone → REJECT: connection refused at once.
        t.on_endpoint_slice("DELETED", slice_)
        px.sync(t.snapshot(), full=False)
        res = subprocess.run(["ip", "netns", "exec", node, sys.executable, "-c",
                              f"import socket;socket.create_connection(('{SVC_IP}',80),timeout=2)"],
                             capture_output=True, text=True, timeout=10)
        assert "ConnectionRefusedError" in res.stderr
        assert "KUBE-SEP-" not in ipt.save("nat")

        assert cleanup(ipt)
        assert "KUBE-" not in ipt.save("nat") + ipt.save("filter") + ipt.save("mangle")
    finally:
        server.kill()
        server.wait(timeout=10)
    assert host_rules() == before


def saved_chains(ipt: RealIptables) -> dict[str, dict[str, list[str]]]:
    """table -> chain -> rules in order; the order chains are listed in is creation order, not ours."""
    out: dict[str, dict[str, list[str]]] = {}
    for table in ("filter", "nat", "mangle"):
        chains: dict[str, list[str]] = {}
        for ln in ipt.save(table).splitlines():
            if ln.startswith(":"):
                chains.setdefault(ln[1:].split()[0], [])
            elif ln.startswith("-A "):
                name, _, rule = ln[3:].partition(" ")
                chains.setdefault(name, []).append(rule)
        out[table] = chains
    return out


@pytest.mark.netns
def test_partial_syncs_leave_what_a_full_sync_leaves(two_namespaces: tuple[str, str]) -> None:
    node_a, node_b = two_namespaces
    before = host_rules()
    t = ChangeTracker("node1")
    for i in range(8):
        t.on_service("ADDED", service(f"ns{i}", f"svc{i}", f"172.30.1.{i + 1}"))
        t.on_endpoint_slice("ADDED", endpoint_slice(f"ns{i}", f"svc{i}", [f"10.180.1.{i + 1}", f"10.180.2.{i + 1}"]))
    a = IptablesProxier(RealIptables(netns=node_a), RenderConfig("node1", (NODE_SIDE,)), batch_lines=20)
    s = t.snapshot()
    a.sync(s, full=True)
    t.ack(s)
    steps = [
        [("ADDED", service("ns3", "mid", "172.30.0.50", svc_type="NodePort", node_ports=[30050],
                           externalIPs=["203.0.113.7"])),
         ("ADDED", endpoint_slice("ns3", "mid", ["10.180.0.50"]))],
        [("MODIFIED", endpoint_slice("ns5", "svc5", ["10.180.1.6", "10.180.9.9"]))],
        [("DELETED", endpoint_slice("ns0", "svc0", []))],
        [("DELETED", service("ns6", "svc6", "172.30.1.7")),
         ("MODIFIED", service("ns2", "svc2", "172.30.1.3", sessionAffinity="ClientIP"))],
    ]
    texts = []
    for events in steps:
        for etype, o in events:
            (t.on_service if o["kind"] == "Service" else t.on_endpoint_slice)(etype, o)
        s = t.snapshot()
        a.sync(s, full=False)
        t.ack(s)
        texts.append(a.last_restore)
    # The new service's rules went in place (-I at a position), the shared chains were not rewritten.
    assert "\n-I KUBE-SERVICES " in texts[0] and ":KUBE-SERVICES " not in texts[0]
    b = IptablesProxier(RealIptables(netns=node_b), RenderConfig("node1", (NODE_SIDE,)))
    b.sync(t.snapshot(), full=True)
    want = saved_chains(b.ipt)  # type: ignore[arg-type]
    assert saved_chains(a.ipt) == want  # type: ignore[arg-type]
    # Drift: a rule added to one of our chains is found and removed by the next full sync.
    svc = next(c for c in want["nat"] if c.startswith("KUBE-SVC-"))
    a.ipt.restore(f"*nat\n-A {svc} -j RETURN\nCOMMIT\n")
    a.sync(t.snapshot(), full=True)
    assert saved_chains(a.ipt) == want  # type: ignore[arg-type]
    n = a.restores
    a.sync(t.snapshot(), full=True)
    assert a.restores == n  # nothing left to change
    assert host_rules() == before
