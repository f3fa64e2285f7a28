"""nftables mode: upstream-exact names and rules (TestOverallNFTablesRules style), fake nft, tracer."""

from __future__ import annotations

import pytest

from proxy_modes.kernel.nft import NftError
from proxy_modes.kernel.nft_fake import FakeNft
from proxy_modes.model import Endpoint, ServicePortName
from proxy_modes.nftables import names as N
from proxy_modes.nftables.render import full_script
from proxy_modes.tracer import Packet
from proxy_modes.tracer_nft import NftTracer
from tests.unit.test_proxy_nft_fixtures import CFG, NODE_IP, OUTSIDE, POD, overall_state


def test_chain_names_match_upstream() -> None:
    spn = ServicePortName("ns1", "svc1", "p80", "TCP")
    assert N.service_chain(spn) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert N.endpoint_chain(spn, Endpoint("10.180.0.1", 80)) == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


SVC1 = """\
add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
"""
SVC2_EXTERNAL = """\
add chain ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.244.0.0/16 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-ips { 192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy no-endpoint-services { 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop }
add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment "ns2/svc2:p80" : drop }
"""
SVC5_SVC6 = """\
add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
add chain ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip daddr 172.30.0.45 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 }
add element ip kube-proxy cluster-ips { 172.30.0.45 }
add element ip kube-proxy service-ips { 172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy cluster-ips { 172.30.0.46 }
add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }
"""
BASE_HEAD = """\
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
"""
BASE_TAIL = """\
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
"""


def test_overall_rules_golden() -> None:
    text = full_script(overall_state(), CFG)
    assert text.startswith(BASE_HEAD)
    for block in (BASE_TAIL, SVC1, SVC2_EXTERNAL):
        assert block in text
    assert text.endswith(SVC5_SVC6)
    assert "add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }" in text
    assert "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }" in text
    assert "local-" not in text  # svc2's only endpoint is on another node: no local chain
    assert "numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , " \
           "1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }" in text


def test_fake_accepts_the_script_and_lists_like_nft() -> None:
    f = FakeNft()
    f.run(full_script(overall_state(), CFG))
    out = f.list_table("ip", "kube-proxy")
    assert "\t\ttype nat hook prerouting priority dstnat; policy accept;" in out
    assert "\t\tmeta mark set meta mark | 0x00004000" in out
    assert "\t\tip daddr 172.30.0.0/16 drop comment \"Drop traffic to unallocated ClusterIPs\"" in out
    assert "\t\ttimeout 3h" in out


@pytest.mark.parametrize("script, error", [
    ("add rule ip kube-proxy services goto nothere", "No such file or directory"),
    ("add element ip kube-proxy service-ips { 172.30.0.99 . tcp . 80 : goto nothere }", "No such file"),
    ("add map ip kube-proxy cluster-ips { type inet_proto . inet_service : verdict ; }", "File exists"),
    ("add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto masquerading }", "File exists"),
    ("delete chain ip kube-proxy services", "Device or resource busy"),
    ("delete chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80", "busy"),
    ("add rule ip kube-proxy services ip daddr 1.2.3.4 bogus", "syntax error"),
    ("frobnicate table ip kube-proxy", "syntax error"),
    ("add rule ip kube-proxy services jump nat-output", "not supported"),
])
def test_fake_refuses_what_nft_refuses_and_stays_untouched(script: str, error: str) -> None:
    f = FakeNft()
    f.run(full_script(overall_state(), CFG))
    before = f.list_table("ip", "kube-proxy")
    with pytest.raises(NftError, match=error):
        f.run("add chain ip kube-proxy newchain\n" + script + "\n")
    assert f.list_table("ip", "kube-proxy") == before  # the whole transaction was refused


def _tracer() -> NftTracer:
    f = FakeNft()
    f.run(full_script(overall_state(), CFG))
    return NftTracer(f.list_table("ip", "kube-proxy"))


@pytest.mark.parametrize("name, src, dst, port, in_iface, targets, masq", [
    ("pod to cluster IP", POD, "172.30.0.41", 80, "cni0", {"10.180.0.1:80": 1.0}, False),
    ("two endpoints, 1/2 each", POD, "172.30.0.44", 80, "cni0", {"10.180.0.4:80": 0.5, "10.180.0.5:80": 0.5}, False),
    ("hairpin", "10.180.0.1", "172.30.0.41", 80, "cni0", {"10.180.0.1:80": 1.0}, True),
    ("outside to cluster IP is masqueraded", OUTSIDE, "172.30.0.41", 80, "eth0", {"10.180.0.1:80": 1.0}, True),
    ("outside to NodePort", OUTSIDE, NODE_IP, 3003, "eth0", {"10.180.0.3:80": 1.0}, True),
    ("no endpoints: reject", POD, "172.30.0.46", 80, "cni0", {"REJECT": 1.0}, False),
    ("wrong port of a ClusterIP: reject", POD, "172.30.0.41", 443, "cni0", {"REJECT": 1.0}, False),
    ("unallocated ClusterIP: drop", POD, "172.30.0.50", 80, "cni0", {"DROP": 1.0}, False),
    ("eTP=Local, no local endpoint: outside dropped", OUTSIDE, "192.168.99.22", 80, "eth0", {"DROP": 1.0}, False),
    ("eTP=Local short-circuits pods", POD, "192.168.99.22", 80, "cni0", {"10.180.0.2:80": 1.0}, False),
    ("node to ClusterIP (OUTPUT)", NODE_IP, "172.30.0.43", 80, None, {"10.180.0.3:80": 1.0}, True),
])
def test_packet_flows(name: str, src: str, dst: str, port: int, in_iface: str | None,
                      targets: dict[str, float], masq: bool) -> None:
    res = _tracer().trace(Packet(src, dst, port, "tcp", in_iface, (NODE_IP,)))
    assert res.targets() == pytest.approx(targets), name
    assert res.masquerade == masq, name
