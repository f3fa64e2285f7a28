"""Upstream's large cluster mode (over 1000 endpoints): endpoint rules without comments, and unused
chains deleted at most every sync period, in the renderer and in the proxier's partial syncs."""

from __future__ import annotations

from proxy_modes.iptables.proxier import IptablesProxier
from proxy_modes.iptables.render import RenderConfig, render
from proxy_modes.kernel.iptables_fake import FakeIptables
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet, Tracer
from proxy_modes.tracker import ChangeTracker

CFG = RenderConfig("node1", ("192.168.0.2",))
BIG = [f"10.181.{i // 250}.{i % 250 + 1}" for i in range(1000)]  # svc1's endpoints


def cluster(t: ChangeTracker, svc2_ips: list[str], big: int = 1000) -> None:
    """svc1 with `big` endpoints, svc2 with svc2_ips: over 1000 in all is a large cluster."""
    for o in (service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns1", "svc1", BIG[:big]),
              service("ns2", "svc2", "172.30.0.42"), endpoint_slice("ns2", "svc2", svc2_ips)):
        (t.on_service if o["kind"] == "Service" else t.on_endpoint_slice)("ADDED", o)


def svc2_rules(text: str) -> list[str]:
    """svc2's rules in its own chains (its SVC chain and its SEP chains), as written."""
    svc = next(ln.split()[-1] for ln in text.splitlines()
               if ln.startswith("-A KUBE-SERVICES") and "ns2/svc2:p80 cluster IP" in ln)
    seps = {ln.split()[-1] for ln in text.splitlines() if ln.startswith(f"-A {svc} ") and "KUBE-SEP-" in ln}
    return [ln for ln in text.splitlines() if ln.startswith(("-A " + svc + " ", *(f"-A {s} " for s in seps)))]


def nat_chains(ipt: FakeIptables) -> set[str]:
    return {ln[1:].split()[0] for ln in ipt.save("nat").splitlines() if ln.startswith(":")}


def test_endpoint_rules_lose_their_comments_above_1000_endpoints() -> None:
    t = ChangeTracker("node1")
    cluster(t, ["10.180.0.2"])  # 1001 endpoints
    rules = svc2_rules(render(t.snapshot(), CFG))
    svc, sep = rules[0].split()[1], rules[1].split()[-1]
    assert rules == [
        f'-A {svc} -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 '
        "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ",  # upstream keeps this one's comment
        f"-A {svc} -j {sep}",
        f"-A {sep} -s 10.180.0.2 -j KUBE-MARK-MASQ",
        f"-A {sep} -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80",
    ]
    # At exactly 1000 the comments stay (upstream: totalEndpoints > 1000).
    t2 = ChangeTracker("node1")
    cluster(t2, ["10.180.0.2"], big=999)
    assert svc2_rules(render(t2.snapshot(), CFG))[1:] == [
        f'-A {svc} -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j {sep}',
        f"-A {sep} -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ",
        f"-A {sep} -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80",
    ]


def test_large_cluster_partial_syncs_delete_unused_chains_once_per_period() -> None:
    now = [0.0]
    ipt, t = FakeIptables(), ChangeTracker("node1")
    px = IptablesProxier(ipt, CFG, clock=lambda: now[0])
    cluster(t, ["10.180.0.2"])

    def change(ips: list[str], at: float) -> None:
        now[0] = at
        t.on_endpoint_slice("MODIFIED", endpoint_slice("ns2", "svc2", ips))
        s = t.snapshot()
        px.sync(s, full=False)
        t.ack(s)

    def sep_of(ip: str) -> str:
        return next(ln.split()[1] for ln in svc2_rules(render(t.snapshot(), CFG)) if f" -s {ip} " in ln)

    s = t.snapshot()
    px.sync(s, full=True)
    t.ack(s)
    assert px.large_cluster
    old = sep_of("10.180.0.2")
    change(["10.180.0.3"], at=5.0)
    new = sep_of("10.180.0.3")
    assert {old, new} <= nat_chains(ipt)  # the unused chain stays (nothing jumps to it)...
    assert f"-X {old}" not in ipt.restores[-1]
    tr = Tracer(ipt.save("nat") + ipt.save("filter"))
    assert tr.trace(Packet("10.244.0.5", "172.30.0.42", 80, in_iface="cni0")).targets() == {"10.180.0.3:80": 1.0}
    change(["10.180.0.2"], at=10.0)  # the first endpoint is back: its old chain is used again, as it is
    assert {old, new} <= nat_chains(ipt)
    change(["10.180.0.2", "10.180.0.4"], at=36.0)  # > 30 s since the full sync's cleanup
    assert new not in nat_chains(ipt) and f"-X {new}" in ipt.restores[-1]
    assert old in nat_chains(ipt)
    fresh = FakeIptables()
    IptablesProxier(fresh, CFG).sync(t.snapshot(), full=True)
    assert ipt.save("nat") == fresh.save("nat")  # ends where a full sync of the same state ends
    change(["10.180.0.4"], at=40.0)  # within 30 s of that cleanup: deferred again
    assert old in nat_chains(ipt)


def test_dropping_below_the_threshold_deletes_the_deferred_chains_at_once() -> None:
    now = [0.0]
    ipt, t = FakeIptables(), ChangeTracker("node1")
    px = IptablesProxier(ipt, CFG, clock=lambda: now[0])
    cluster(t, ["10.180.0.2", "10.180.0.3"])
    s = t.snapshot()
    px.sync(s, full=True)
    t.ack(s)
    now[0] = 1.0
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns2", "svc2", ["10.180.0.2"]))
    s = t.snapshot()
    px.sync(s, full=False)
    t.ack(s)
    before = nat_chains(ipt)
    now[0] = 2.0
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns1", "svc1", BIG[:10]))  # 11 endpoints: small again
    s = t.snapshot()
    px.sync(s, full=False)
    t.ack(s)
    assert not px.large_cluster
    fresh = FakeIptables()
    IptablesProxier(fresh, CFG).sync(t.snapshot(), full=True)
    assert nat_chains(ipt) == nat_chains(fresh) and len(before) > len(nat_chains(ipt)) + 990
