"""nftables mode: upstream-exact names and rules (TestOverallNFTablesRules style), fake nft, tracer."""

from __future__ import annotations

from dataclasses import replace

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


T = "ip kube-proxy"
SVC_IPS = 'add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; ' \
          'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = { '
NO_EP = 'add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; ' \
        'comment "vmap to drop or reject packets to services with no endpoints" ; elements = { '
NODEPORTS = 'add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; elements = { '
NO_NP = 'add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; ' \
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; elements = { '
CIPS = 'add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = { '
EP1 = "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
SVC1 = f"""\
add chain {T} {EP1} {{ ip saddr 10.180.0.1 jump mark-for-masquerade ; meta l4proto tcp dnat to 10.180.0.1:80 ; }}
add chain {T} service-ULMVA6XW-ns1/svc1/tcp/p80 {{ ip daddr 172.30.0.41 ip saddr != 10.244.0.0/16 jump mark-for-masquerade ; \
numgen random mod 1 vmap {{ 0 : goto {EP1} }} ; }}
{CIPS}172.30.0.41 }} ; }}
{SVC_IPS}172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }} ; }}
"""
SVC2_EXTERNAL = f"""\
add chain {T} external-42NFTM6N-ns2/svc2/tcp/p80 {{ \
ip saddr 10.244.0.0/16 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic" ; \
fib saddr type local jump mark-for-masquerade comment "masquerade local traffic" ; \
fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic" ; }}
{CIPS}172.30.0.42 }} ; }}
{SVC_IPS}172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80 , 192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }} ; }}
{NO_EP}192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop }} ; }}
{NODEPORTS}tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }} ; }}
{NO_NP}tcp . 3001 comment "ns2/svc2:p80" : drop }} ; }}
"""
AFF, EP5 = "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80", "endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"
SVC5_SVC6 = f"""\
add set {T} {AFF} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}
add chain {T} {EP5} {{ ip saddr 10.180.0.3 jump mark-for-masquerade ; update @{AFF} {{ ip saddr }} ; meta l4proto tcp dnat to 10.180.0.3:80 ; }}
add chain {T} service-HVFWP5L3-ns5/svc5/tcp/p80 {{ ip daddr 172.30.0.45 ip saddr != 10.244.0.0/16 jump mark-for-masquerade ; \
ip saddr @{AFF} goto {EP5} ; numgen random mod 1 vmap {{ 0 : goto {EP5} }} ; }}
{CIPS}172.30.0.45 }} ; }}
{SVC_IPS}172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80 }} ; }}
{CIPS}172.30.0.46 }} ; }}
{NO_EP}172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }} ; }}
"""
BASE_HEAD = """\
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
"""
BASE_TAIL = """\
add chain ip kube-proxy mark-for-masquerade { mark set mark or 0x4000 ; }
add chain ip kube-proxy masquerading { mark and 0x4000 == 0 return ; mark set mark xor 0x4000 ; masquerade fully-random ; }
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
           "1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 } ; }" in text
    assert "add rule" not in text and "add element" not in text  # both make nft 1.0.6 list every chain


def test_large_tables_pick_endpoints_by_rules_instead_of_anonymous_vmaps() -> None:
    text = full_script(overall_state(), replace(CFG, vmap_max_services=5))  # 6 service ports > 5
    assert "vmap {" not in text
    assert ("add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 { ip daddr 172.30.0.44 ip saddr != 10.244.0.0/16 "
            "jump mark-for-masquerade ; numgen random mod 2 0 goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ; "
            "goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 ; }") in text


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


def _tracer(vmap_max_services: int = 2000) -> NftTracer:
    f = FakeNft()
    f.run(full_script(overall_state(), replace(CFG, vmap_max_services=vmap_max_services)))
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
@pytest.mark.parametrize("vmap_max_services", [2000, 0])  # anonymous numgen vmaps, and numgen rules
def test_packet_flows(name: str, src: str, dst: str, port: int, in_iface: str | None,
                      targets: dict[str, float], masq: bool, vmap_max_services: int) -> None:
    res = _tracer(vmap_max_services).trace(Packet(src, dst, port, "tcp", in_iface, (NODE_IP,)))
    assert res.targets() == pytest.approx(targets), name
    assert res.masquerade == masq, name


def test_tracer_splits_numgen_rules_uniformly() -> None:
    listing = """table ip kube-proxy {
\tchain nat-output {
\t\ttype nat hook output priority dstnat; policy accept;
\t\tip daddr 172.30.0.9 goto svc
\t}
\tchain svc {
\t\tnumgen random mod 3 0 goto a
\t\tnumgen random mod 2 0 goto b
\t\tgoto c
\t}
\tchain a {
\t\tmeta l4proto tcp dnat to 10.1.0.1:80
\t}
\tchain b {
\t\tmeta l4proto tcp dnat to 10.1.0.2:80
\t}
\tchain c {
\t\tmeta l4proto tcp dnat to 10.1.0.3:80
\t}
}
"""
    res = NftTracer(listing).trace(Packet(NODE_IP, "172.30.0.9", 80, "tcp", None, (NODE_IP,)))
    assert res.targets() == pytest.approx({f"10.1.0.{i}:80": 1 / 3 for i in (1, 2, 3)})
