"""userspace mode: portal rules text, round robin with shuffle and ClientIP affinity, fake iptables cleanup."""

from __future__ import annotations

import random

import pytest

from proxy_modes.kernel import rules as iptables_rules
from proxy_modes.kernel.iptables_fake import FakeIptables
from proxy_modes.model import ServicePort, ServicePortName
from proxy_modes.userspace import rules as R
from proxy_modes.userspace.loadbalancer import RoundRobin
from proxy_modes.userspace.proxier import cleanup

SP = ServicePort(ServicePortName("ns1", "svc1", "p80"), "172.30.0.41", 80, node_port=30080)


def test_portal_rules_golden() -> None:
    assert R.render({SP: 36001}, "192.168.0.2") == (
        "*nat\n:KUBE-PORTALS-CONTAINER - [0:0]\n:KUBE-PORTALS-HOST - [0:0]\n"
        ":KUBE-NODEPORT-CONTAINER - [0:0]\n:KUBE-NODEPORT-HOST - [0:0]\n"
        "-A KUBE-PORTALS-CONTAINER -d 172.30.0.41/32 -p tcp -m comment --comment ns1/svc1:p80 -m tcp --dport 80 -j REDIRECT --to-ports 36001\n"
        "-A KUBE-PORTALS-HOST -d 172.30.0.41/32 -p tcp -m comment --comment ns1/svc1:p80 -m tcp --dport 80 -j DNAT --to-destination 192.168.0.2:36001\n"
        "-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment ns1/svc1:p80 -m tcp --dport 30080 -j REDIRECT --to-ports 36001\n"
        "-A KUBE-NODEPORT-HOST -p tcp -m comment --comment ns1/svc1:p80 -m tcp --dport 30080 -j DNAT --to-destination 192.168.0.2:36001\n"
        "COMMIT\n")


def test_round_robin_cycles_and_skips_failed() -> None:
    lb = RoundRobin(rng=random.Random(1))
    lb.update("s", ["a:1", "b:1", "c:1"], None)
    picks = [lb.next_endpoint("s", "10.0.0.1") for _ in range(6)]
    assert sorted(picks[:3]) == ["a:1", "b:1", "c:1"] and picks[:3] == picks[3:]
    assert lb.next_endpoint("s", "x", skip={"a:1", "b:1"}) == "c:1"
    assert lb.next_endpoint("s", "x", skip={"a:1", "b:1", "c:1"}) is None


def test_client_ip_affinity_with_ttl() -> None:
    now = [0.0]
    lb = RoundRobin(clock=lambda: now[0], rng=random.Random(2))
    lb.update("s", ["a:1", "b:1", "c:1"], 10)
    first = lb.next_endpoint("s", "10.0.0.1")
    assert all(lb.next_endpoint("s", "10.0.0.1") == first for _ in range(5))
    now[0] = 100.0  # past the TTL: round robin again
    assert lb.next_endpoint("s", "10.0.0.1") != first or lb.next_endpoint("s", "10.0.0.1") != first


def test_cleanup_removes_only_userspace_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shared fake iptables does not know REDIRECT yet (its owner's module); teach it for this test.
    monkeypatch.setitem(iptables_rules.TARGET_OPTS, "REDIRECT", {"--to-ports": True})
    ipt = FakeIptables()
    ipt.ensure_chain("nat", "OTHER")
    ipt.ensure_rule("append", "nat", "PREROUTING", ["-j", "OTHER"])
    for c in R.CHAINS:
        ipt.ensure_chain("nat", c)
    for j in R.JUMPS:
        ipt.ensure_rule(j.position, "nat", j.source, j.args())  # type: ignore[arg-type]
    ipt.restore(R.render({SP: 36001}, "192.168.0.2"))
    assert cleanup(ipt)
    saved = ipt.save("nat")
    assert "KUBE-" not in saved and "-A PREROUTING -j OTHER" in saved
