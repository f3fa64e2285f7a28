"""`netkube trace` output on fake rule sets; the kube-proxy ConfigMap's mode; `--probe`'s conntrack reading."""

from __future__ import annotations

import pytest

from netkube.addons import kubeproxy
from netkube.agent.proxymode import ProxyModeSwitcher
from netkube.config import ClusterConfig
from netkube.debug.probe import rewrite_summary
from netkube.debug.traceformat import Flow, format_trace
from proxy_modes.iptables.proxier import IptablesProxier
from proxy_modes.iptables.render import RenderConfig
from proxy_modes.kernel.iptables_fake import FakeIptables
from proxy_modes.kernel.nft_fake import FakeNft
from proxy_modes.runner import make_backend
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet, Tracer
from proxy_modes.tracer_nft import NftTracer
from proxy_modes.tracker import ChangeTracker

# Address plan: pods 10.244.0.0/16 · services 172.30.0.x · node1 = 192.168.0.2 (endpoints on node2 and
# node1) · LoadBalancer IP 192.168.0.240 · outside client 203.0.113.1
NODE_IP, LB, OUTSIDE = "192.168.0.2", "192.168.0.240", "203.0.113.1"
OWNERS = {"10.244.1.5": "node2 pod default/web-a", "10.244.0.7": "node1 pod default/web-b"}


def _tracker() -> ChangeTracker:
    t = ChangeTracker("node1")
    svc = service("default", "web", "172.30.0.41", svc_type="LoadBalancer", node_ports=[30080])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": LB}]}}
    local = service("default", "web-local", "172.30.0.42", svc_type="LoadBalancer", node_ports=[30081],
                    externalTrafficPolicy="Local")
    for o in (svc, local):
        t.on_service("ADDED", o)
    for name in ("web", "web-local"):
        t.on_endpoint_slice("ADDED", endpoint_slice("default", name, ["10.244.1.5", "10.244.0.7"],
                                                     node={"10.244.1.5": "node2", "10.244.0.7": "node1"}))
    t.on_service("ADDED", service("default", "empty", "172.30.0.46"))
    return t


def _iptables_tracer() -> Tracer:
    ipt = FakeIptables()
    IptablesProxier(ipt, RenderConfig("node1", (NODE_IP,))).sync(_tracker().snapshot(), full=True)
    return Tracer(ipt.save("filter") + ipt.save("nat"))


def _flow(dst: str, dport: int, mode: str = "iptables", src: str = OUTSIDE) -> Flow:
    return Flow(src, "external client", dst, dport, "tcp", "svc default/web:p80 loadbalancer IP", "node1", "eth0", mode)


def test_lb_ip_from_outside_lists_targets_odds_masquerade_and_owners() -> None:
    pkt = Packet(OUTSIDE, LB, 80, "tcp", "eth0", (NODE_IP, LB))
    out = format_trace(_flow(LB, 80), _iptables_tracer().trace(pkt), OWNERS)
    assert out.splitlines()[:2] == [
        "trace tcp 203.0.113.1 (external client) -> 192.168.0.240:80 (svc default/web:p80 loadbalancer IP)",
        "netfilter on node1, iptables mode, from eth0",
    ]
    assert '-A KUBE-SERVICES -d 192.168.0.240/32 -p tcp -m comment --comment "default/web:p80 loadbalancer IP"' in out
    assert out.splitlines()[-3:] == [
        "targets:",
        "  10.244.0.7:80           50.0%  masquerade yes  ends on node1 pod default/web-b",
        "  10.244.1.5:80           50.0%  masquerade yes  ends on node2 pod default/web-a",
    ]


def test_local_policy_keeps_source_and_only_local_endpoint_brief() -> None:
    pkt = Packet(OUTSIDE, NODE_IP, 30081, "tcp", "eth0", (NODE_IP,))
    out = format_trace(_flow(NODE_IP, 30081), _iptables_tracer().trace(pkt), OWNERS, verbose=False)
    assert "path 1" not in out
    assert out.splitlines()[-1] == "  10.244.0.7:80          100.0%  masquerade no   ends on node1 pod default/web-b"


def test_no_endpoints_says_refused() -> None:
    pkt = Packet("10.244.0.9", "172.30.0.46", 80, "tcp", "cni0", (NODE_IP,))
    out = format_trace(_flow("172.30.0.46", 80), _iptables_tracer().trace(pkt), OWNERS, verbose=False)
    assert "REJECT                 100.0%  masquerade no   ends on nothing: rejected" in out


def test_nftables_rules_give_the_same_targets() -> None:
    nft = FakeNft()
    backend = make_backend("nftables", ClusterConfig(name="t", pod_cidr="10.244.0.0/16"), "node1", NODE_IP, nft=nft)
    backend.sync(_tracker().snapshot(), full=True)
    tracer = NftTracer(nft.list_table("ip", "kube-proxy"))
    out = format_trace(_flow(LB, 80, "nftables"), tracer.trace(Packet(OUTSIDE, LB, 80, "tcp", "eth0", (NODE_IP, LB))),
                       OWNERS)
    assert "netfilter on node1, nftables mode, from eth0" in out
    assert "numgen random mod 2 vmap" in out
    assert "  10.244.1.5:80           50.0%  masquerade yes  ends on node2 pod default/web-a" in out


def test_userspace_portal_expands_to_the_round_robin_pool() -> None:
    save = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-PORTALS-CONTAINER - [0:0]\n"
            "-A PREROUTING -j KUBE-PORTALS-CONTAINER\n"
            "-A KUBE-PORTALS-CONTAINER -d 192.168.0.240/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 36001\n"
            "COMMIT\n")
    result = Tracer(save).trace(Packet(OUTSIDE, LB, 80, "tcp", "eth0", (NODE_IP, LB)))
    out = format_trace(_flow(LB, 80, "userspace"), result, OWNERS,
                       {"192.168.0.2:36001": ["10.244.0.7:80", "10.244.1.5:80"]}, verbose=False)
    assert "192.168.0.2:36001      100.0%  userspace proxy on node1, round-robin over 2 endpoint(s)" in out
    assert "    10.244.1.5:80         50.0%  ends on node2 pod default/web-a" in out


def test_conntrack_entry_shows_dnat_and_masquerade() -> None:
    line = ("tcp      6 8 CLOSE src=192.168.56.200 dst=192.168.56.240 sport=40877 dport=80 "
            "src=10.244.2.2 dst=10.244.0.0 sport=8080 dport=26240 mark=0 use=1")
    assert rewrite_summary(line) == ("DNAT 192.168.56.240:80 -> 10.244.2.2:8080; "
                                     "source 192.168.56.200:40877 -> 10.244.0.0:26240 (masqueraded)")


def test_configmap_mode_round_trip_keeps_other_fields() -> None:
    cm = kubeproxy.configmap(ClusterConfig(name="t"), "iptables")
    assert kubeproxy.mode_of(cm) == "iptables"
    cm["data"]["config.conf"] = kubeproxy.with_mode(cm, "nftables")
    assert kubeproxy.mode_of(cm) == "nftables" and "clusterCIDR: 10.244.0.0/16" in cm["data"]["config.conf"]
    assert kubeproxy.mode_of({"data": {"config.conf": "mode: ''\n"}}) == "iptables"  # upstream's default
    with pytest.raises(ValueError, match="not YAML"):
        kubeproxy.mode_of({"data": {"config.conf": "mode: [\n"}})


def test_switcher_follows_valid_modes_and_ignores_bad_ones() -> None:
    sw = ProxyModeSwitcher(None, ClusterConfig(name="t"), "node1", NODE_IP)  # type: ignore[arg-type]
    cm = kubeproxy.configmap(ClusterConfig(name="t"), "nftables")
    sw.on_configmap("MODIFIED", cm, None)
    assert sw.wanted == "nftables" and sw._changed.is_set()
    sw._changed.clear()
    sw.on_configmap("MODIFIED", kubeproxy.configmap(ClusterConfig(name="t"), "bogus"), None)
    sw.on_configmap("MODIFIED", {"metadata": {"name": "kube-proxy"}, "data": {"config.conf": "mode: [\n"}}, None)
    assert sw.wanted == "nftables" and not sw._changed.is_set()  # a typo never tears down working rules
