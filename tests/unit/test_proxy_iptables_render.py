"""Golden iptables-restore dumps of the iptables renderer, in the style of upstream TestOverallIPTablesRules."""

from __future__ import annotations

import base64
import hashlib

import pytest

from proxy_modes.iptables.chains import sep_chain, svc_chain
from proxy_modes.iptables.render import RenderConfig, render
from proxy_modes.model import Endpoint, ServicePortName
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracker import ChangeTracker

# Address plan (fixed for every proxy test):
#   cluster (pod) CIDR 10.244.0.0/16 · service IPs 172.30.0.x · endpoints 10.180.0.x
#   this node "node1" at 192.168.0.2 · another node "node2" · outside client 203.0.113.1
CLUSTER_CIDR = "10.244.0.0/16"
NODE_IP = "192.168.0.2"
CFG = RenderConfig("node1", (NODE_IP,), CLUSTER_CIDR)

FILTER_HEAD = """*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
"""
NAT_HEAD_CHAINS = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
"""
NAT_HEAD_RULES = """-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
"""
NAT_TAIL = """-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
"""


def dump(filter_rules: str, nat_chains: str, nat_rules: str) -> str:
    return FILTER_HEAD + filter_rules + "COMMIT\n" + NAT_HEAD_CHAINS + nat_chains + NAT_HEAD_RULES + nat_rules + NAT_TAIL


def rendered(*objs: dict) -> str:
    t = ChangeTracker("node1")
    for o in objs:
        (t.on_service if o["kind"] == "Service" else t.on_endpoint_slice)("ADDED", o)
    return render(t.snapshot(), CFG)


def test_chain_hash_by_hand_and_upstream_names() -> None:
    spn = ServicePortName("ns1", "svc1", "p80", "TCP")
    by_hand = base64.b32encode(hashlib.sha256(b"ns1/svc1:p80tcp").digest()).decode()[:16]
    assert svc_chain(spn) == "KUBE-SVC-" + by_hand
    # Names printed in upstream pkg/proxy/iptables/proxier_test.go
    assert svc_chain(spn) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert sep_chain(spn, Endpoint("10.180.0.1", 80)) == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert svc_chain(ServicePortName("ns2", "svc2", "p80")) == "KUBE-SVC-GNZBNJ2PO5MGZ6GT"
    # Protocol is part of the hash: the UDP port of the same name is another chain.
    assert svc_chain(ServicePortName("ns1", "svc1", "p80", "UDP")) != svc_chain(spn)


def test_clusterip_one_endpoint() -> None:
    got = rendered(service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns1", "svc1", ["10.180.0.1"]))
    assert got == dump("", """:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
""", """-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
""")


def test_clusterip_three_endpoints_sorted_with_probabilities() -> None:
    got = rendered(service("ns1", "svc1", "172.30.0.41"),
                   endpoint_slice("ns1", "svc1", ["10.180.0.3", "10.180.0.1", "10.180.0.2"]))
    assert got == dump("", """:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-LXVODXWDISEETFEF - [0:0]
:KUBE-SEP-ICDUIKC33SFI6ZPR - [0:0]
""", """-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-LXVODXWDISEETFEF
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:80" -j KUBE-SEP-ICDUIKC33SFI6ZPR
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-ICDUIKC33SFI6ZPR -m comment --comment ns1/svc1:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-ICDUIKC33SFI6ZPR -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
""")


def test_nodeport_cluster_policy() -> None:
    got = rendered(service("ns3", "svc3", "172.30.0.43", svc_type="NodePort", node_ports=[30003]),
                   endpoint_slice("ns3", "svc3", ["10.180.0.3"]))
    assert got == dump("", """:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
""", """-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 30003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
""")


def test_no_endpoints_rejects_cluster_ip_and_node_port() -> None:
    got = rendered(service("ns6", "svc6", "172.30.0.46", svc_type="NodePort", node_ports=[30006]))
    assert got == dump(
        """-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30006 -j REJECT
""", "", "")


def test_session_affinity_client_ip() -> None:
    got = rendered(service("ns5", "svc5", "172.30.0.45", sessionAffinity="ClientIP"),
                   endpoint_slice("ns5", "svc5", ["10.180.0.4", "10.180.0.5"]))
    assert got == dump("", """:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SEP-4XN4Y7BLDMS4FVTY - [0:0]
:KUBE-SEP-TGTSLJDSI6KB7NCB - [0:0]
""", """-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.4:80" -m recent --name KUBE-SEP-4XN4Y7BLDMS4FVTY --rcheck --seconds 10800 --reap -j KUBE-SEP-4XN4Y7BLDMS4FVTY
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.5:80" -m recent --name KUBE-SEP-TGTSLJDSI6KB7NCB --rcheck --seconds 10800 --reap -j KUBE-SEP-TGTSLJDSI6KB7NCB
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-4XN4Y7BLDMS4FVTY
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.5:80" -j KUBE-SEP-TGTSLJDSI6KB7NCB
-A KUBE-SEP-4XN4Y7BLDMS4FVTY -m comment --comment ns5/svc5:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-4XN4Y7BLDMS4FVTY -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-4XN4Y7BLDMS4FVTY --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SEP-TGTSLJDSI6KB7NCB -m comment --comment ns5/svc5:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-TGTSLJDSI6KB7NCB -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-TGTSLJDSI6KB7NCB --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
""")


def test_external_traffic_policy_local() -> None:
    got = rendered(
        service("ns2", "svc2", "172.30.0.42", svc_type="NodePort", node_ports=[30002], externalTrafficPolicy="Local"),
        endpoint_slice("ns2", "svc2", ["10.180.0.1", "10.180.0.2"], node={"10.180.0.1": "node2", "10.180.0.2": "node1"}),
    )
    assert got == dump("", """:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVL-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SEP-FKDX4UEXGN6O6BS2 - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
""", """-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 30002 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.244.0.0/16 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -j KUBE-SVL-GNZBNJ2PO5MGZ6GT
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-FKDX4UEXGN6O6BS2
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVL-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SEP-FKDX4UEXGN6O6BS2 -m comment --comment ns2/svc2:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-FKDX4UEXGN6O6BS2 -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
""")


def test_external_policy_local_without_local_endpoints_drops_node_port() -> None:
    got = rendered(
        service("ns2", "svc2", "172.30.0.42", svc_type="NodePort", node_ports=[30002], externalTrafficPolicy="Local"),
        endpoint_slice("ns2", "svc2", ["10.180.0.1"], node="node2"),
    )
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" '
            "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30002 -j DROP") in got
    assert "KUBE-SVL-" not in got
    assert "-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -j " not in got  # nothing falls through to a policy chain


@pytest.mark.parametrize("spec", [{"type": "ExternalName", "externalName": "example.com"}, {"clusterIP": "None"}])
def test_headless_and_external_name_render_nothing(spec: dict) -> None:
    svc = service("ns1", "svc1", "172.30.0.41")
    svc["spec"].update(spec)
    got = rendered(svc, endpoint_slice("ns1", "svc1", ["10.180.0.1"]))
    assert got == dump("", "", "")


def test_stale_service_chains_are_flushed_then_deleted() -> None:
    t = ChangeTracker("node1")
    got = render(t.snapshot(), CFG, existing_nat_chains=["KUBE-SVC-OLD", "KUBE-SEP-OLD", "KUBE-SERVICES", "DOCKER"])
    assert ":KUBE-SEP-OLD - [0:0]\n:KUBE-SVC-OLD - [0:0]\n" in got
    assert got.endswith("-X KUBE-SEP-OLD\n-X KUBE-SVC-OLD\nCOMMIT\n")
    assert "DOCKER" not in got  # never touch chains that are not ours
