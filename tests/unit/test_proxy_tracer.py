"""Packet flows through the rules the iptables proxier programs (fake iptables, tracer over iptables-save)."""

from __future__ import annotations

import pytest

from proxy_modes.iptables.proxier import IptablesProxier
from proxy_modes.iptables.render import RenderConfig
from proxy_modes.kernel.iptables_fake import FakeIptables
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet, Tracer
from proxy_modes.tracker import ChangeTracker

# Address plan: cluster CIDR 10.244.0.0/16 · services 172.30.0.x · endpoints 10.180.0.x (pods of
# this test live in 10.244.x) · node1 = 192.168.0.2 · outside client 203.0.113.1
NODE_IP = "192.168.0.2"
POD = "10.244.0.2"
OUTSIDE = "203.0.113.1"


@pytest.fixture(scope="module")
def tracer() -> Tracer:
    t = ChangeTracker("node1")
    for o in [
        service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns1", "svc1", ["10.180.0.1"]),
        service("ns4", "svc4", "172.30.0.44"), endpoint_slice("ns4", "svc4", ["10.180.0.1", "10.180.0.2", "10.180.0.3"]),
        service("ns3", "svc3", "172.30.0.43", svc_type="NodePort", node_ports=[30003]),
        endpoint_slice("ns3", "svc3", ["10.180.0.3"]),
        service("ns2", "svc2", "172.30.0.42", svc_type="NodePort", node_ports=[30002], externalTrafficPolicy="Local"),
        endpoint_slice("ns2", "svc2", ["10.180.0.1", "10.180.0.2"], node={"10.180.0.1": "node2", "10.180.0.2": "node1"}),
        service("ns6", "svc6", "172.30.0.46"),
        service("ns7", "svc7", "172.30.0.47", ports=[("dns", 53, "UDP")]),
        endpoint_slice("ns7", "svc7", ["10.180.0.7"], ports=[("dns", 5353, "UDP")]),
    ]:
        (t.on_service if o["kind"] == "Service" else t.on_endpoint_slice)("ADDED", o)
    ipt = FakeIptables()
    IptablesProxier(ipt, RenderConfig("node1", (NODE_IP,))).sync(t.snapshot(), full=True)
    return Tracer(ipt.save("filter") + ipt.save("nat"))


THIRD = pytest.approx(1 / 3)
FLOWS = [
    # name, src, dst, port, proto, in_iface, expected targets, masquerade
    ("pod to clusterIP, one endpoint", POD, "172.30.0.41", 80, "tcp", "cni0", {"10.180.0.1:80": 1.0}, False),
    ("pod to clusterIP, three endpoints", POD, "172.30.0.44", 80, "tcp", "cni0",
     {"10.180.0.1:80": THIRD, "10.180.0.2:80": THIRD, "10.180.0.3:80": THIRD}, False),
    ("node itself to clusterIP is masqueraded", NODE_IP, "172.30.0.41", 80, "tcp", None, {"10.180.0.1:80": 1.0}, True),
    ("hairpin: endpoint reaching its own service", "10.180.0.1", "172.30.0.41", 80, "tcp", "cni0",
     {"10.180.0.1:80": 1.0}, True),
    ("outside to NodePort (Cluster policy) is masqueraded", OUTSIDE, NODE_IP, 30003, "tcp", "eth0",
     {"10.180.0.3:80": 1.0}, True),
    ("outside to NodePort (Local policy) keeps source, local endpoint only", OUTSIDE, NODE_IP, 30002, "tcp", "eth0",
     {"10.180.0.2:80": 1.0}, False),
    ("pod to NodePort (Local policy) may use any endpoint", POD, NODE_IP, 30002, "tcp", "cni0",
     {"10.180.0.1:80": 0.5, "10.180.0.2:80": 0.5}, False),
    ("no endpoints: REJECT", POD, "172.30.0.46", 80, "tcp", "cni0", {"REJECT": 1.0}, False),
    ("wrong port: untouched", POD, "172.30.0.41", 81, "tcp", "cni0", {"ACCEPT": 1.0}, False),
    ("wrong protocol: untouched", POD, "172.30.0.41", 80, "udp", "cni0", {"ACCEPT": 1.0}, False),
    ("UDP service with target port", POD, "172.30.0.47", 53, "udp", "cni0", {"10.180.0.7:5353": 1.0}, False),
]


@pytest.mark.parametrize("name,src,dst,port,proto,iface,targets,masq", FLOWS, ids=[f[0] for f in FLOWS])
def test_flows(tracer: Tracer, name: str, src: str, dst: str, port: int, proto: str, iface: str | None,
               targets: dict, masq: bool) -> None:
    r = tracer.trace(Packet(src, dst, port, proto, iface, local_ips=(NODE_IP,)))
    assert r.targets() == targets
    assert r.masquerade is masq


def test_hits_are_listed_in_order(tracer: Tracer) -> None:
    r = tracer.trace(Packet(POD, "172.30.0.41", 80, "tcp", "cni0", local_ips=(NODE_IP,)))
    hits = r.paths[0].hits
    assert hits[0].startswith("nat -A PREROUTING") and "KUBE-SERVICES" in hits[0]
    assert any("-j KUBE-SVC-XPGD46QRK7WJZT7O" in h for h in hits)
    assert any("DNAT --to-destination 10.180.0.1:80" in h for h in hits)
