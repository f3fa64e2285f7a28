"""Tracker, iptables proxier (fake iptables), cleanup, conntrack and the sync runner with the fake API."""

from __future__ import annotations

import asyncio

import pytest

from netkube.client import ENDPOINTSLICES, SERVICES
from netkube.config import ClusterConfig
from proxy_modes.conntrack import FakeConntrack, Flow, clear_stale_udp
from proxy_modes.iptables.cleanup import cleanup
from proxy_modes.iptables.proxier import IptablesProxier
from proxy_modes.iptables.render import RenderConfig
from proxy_modes.kernel.iptables_fake import FakeIptables
from proxy_modes.runner import run_proxy
from proxy_modes.syncrunner import SyncRunner
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet, Tracer
from proxy_modes.tracker import ChangeTracker

NODE_IP = "192.168.0.2"
CFG = RenderConfig("node1", (NODE_IP,))


def feed(t: ChangeTracker, *objs: dict) -> None:
    for o in objs:
        (t.on_service if o["kind"] == "Service" else t.on_endpoint_slice)("ADDED", o)


def nat_chains(ipt: FakeIptables) -> set[str]:
    return {line[1:].split()[0] for line in ipt.save("nat").splitlines() if line.startswith(":")}


def test_tracker_records_changed_services_until_ack() -> None:
    t = ChangeTracker("node1")
    feed(t, service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns2", "svc2", ["10.180.0.2"]))
    s = t.snapshot()
    assert s.changed == {"ns1/svc1", "ns2/svc2"}
    t.ack(s)
    assert not t.pending
    feed(t, service("ns1", "svc1", "172.30.0.41"))  # identical: not a change
    assert not t.pending
    t.on_endpoint_slice("DELETED", endpoint_slice("ns2", "svc2", ["10.180.0.2"]))
    assert t.snapshot().changed == {"ns2/svc2"}


def test_tracker_endpoint_conditions_and_locality() -> None:
    t = ChangeTracker("node1")
    feed(t, service("ns1", "svc1", "172.30.0.41"),
         endpoint_slice("ns1", "svc1", ["10.180.0.1", "10.180.0.2"], node={"10.180.0.1": "node1"},
                        ready={"10.180.0.2": False}))
    eps = next(iter(t.snapshot().endpoints.values()))
    assert [(e.ip, e.ready, e.is_local) for e in eps] == [("10.180.0.1", True, True), ("10.180.0.2", False, False)]


def test_proxier_installs_jumps_once_and_deletes_stale_chains() -> None:
    ipt, t = FakeIptables(), ChangeTracker("node1")
    px = IptablesProxier(ipt, CFG)
    feed(t, service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns1", "svc1", ["10.180.0.1"]))
    px.sync(t.snapshot(), full=True)
    assert {"KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SXIVWICOYRO3J4NJ"} <= nat_chains(ipt)
    px.sync(t.snapshot(), full=True)
    assert ipt.rules("nat", "PREROUTING") == ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    assert len(ipt.restores) == 1  # one iptables-restore; the second full sync found nothing to change
    t.on_service("DELETED", service("ns1", "svc1", "172.30.0.41"))
    px.sync(t.snapshot(), full=False)
    assert not any(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in nat_chains(ipt))


def test_partial_sync_rewrites_only_changed_services() -> None:
    ipt, t = FakeIptables(), ChangeTracker("node1")
    px = IptablesProxier(ipt, CFG)
    feed(t, service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns1", "svc1", ["10.180.0.1"]),
         service("ns2", "svc2", "172.30.0.42"), endpoint_slice("ns2", "svc2", ["10.180.0.2"]))
    s = t.snapshot()
    px.sync(s, full=True)
    t.ack(s)
    feed(t, endpoint_slice("ns2", "svc2", ["10.180.0.2", "10.180.0.3"]))
    px.sync(t.snapshot(), full=False)
    last = ipt.restores[-1]
    assert "KUBE-SEP-SXIVWICOYRO3J4NJ" not in last  # svc1 untouched...
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" in nat_chains(ipt)  # ...and still there
    tr = Tracer(ipt.save("nat") + ipt.save("filter"))
    assert tr.trace(Packet("10.244.0.5", "172.30.0.41", 80, in_iface="cni0")).targets() == {"10.180.0.1:80": 1.0}
    assert set(tr.trace(Packet("10.244.0.5", "172.30.0.42", 80, in_iface="cni0")).targets()) == {
        "10.180.0.2:80", "10.180.0.3:80"}


def test_failed_restore_keeps_old_rules() -> None:
    ipt, t = FakeIptables(), ChangeTracker("node1")
    px = IptablesProxier(ipt, CFG)
    feed(t, service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns1", "svc1", ["10.180.0.1"]))
    px.sync(t.snapshot(), full=True)
    before = ipt.save("nat")
    ipt.fail_next_restore = "iptables-restore: line 3 failed"
    t.on_service("DELETED", service("ns1", "svc1", "172.30.0.41"))
    with pytest.raises(Exception, match="line 3 failed"):
        px.sync(t.snapshot(), full=False)
    assert ipt.save("nat") == before


def test_cleanup_removes_only_ours() -> None:
    ipt, t = FakeIptables(), ChangeTracker("node1")
    ipt.restore("*nat\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\nCOMMIT\n")
    px = IptablesProxier(ipt, CFG)
    feed(t, service("ns1", "svc1", "172.30.0.41"), endpoint_slice("ns1", "svc1", ["10.180.0.1"]))
    px.sync(t.snapshot(), full=True)
    assert cleanup(ipt) is True
    assert nat_chains(ipt) == {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "DOCKER"}
    assert ipt.rules("nat", "PREROUTING") == ["-j DOCKER"]
    assert ipt.rules("filter", "FORWARD") == [] and not ipt.chain_exists("mangle", "KUBE-PROXY-CANARY")


def test_stale_udp_conntrack_cleared_after_endpoint_changes() -> None:
    t = ChangeTracker("node1")
    dns = service("kube-system", "kube-dns", "172.30.0.10", ports=[("dns", 53, "UDP")])
    feed(t, dns)
    t.ack(t.snapshot())
    feed(t, endpoint_slice("kube-system", "kube-dns", ["10.180.0.1", "10.180.0.2"], ports=[("dns", 53, "UDP")]))
    s = t.snapshot()
    assert [sp.cluster_ip for sp in s.stale_udp_services] == ["172.30.0.10"]  # 0 → N endpoints
    t.ack(s)
    feed(t, endpoint_slice("kube-system", "kube-dns", ["10.180.0.2"], ports=[("dns", 53, "UDP")]))
    s = t.snapshot()
    ct = FakeConntrack([Flow("udp", "172.30.0.10", 53, "10.180.0.1"), Flow("udp", "172.30.0.10", 53, "10.180.0.2")])
    assert clear_stale_udp(ct, s) == 1
    assert ct.flows == [Flow("udp", "172.30.0.10", 53, "10.180.0.2")]
    assert ct.calls == [["-p", "udp", "--orig-dst", "172.30.0.10", "--reply-src", "10.180.0.1"]]


class FlakyBackend:
    def __init__(self, fail: int) -> None:
        self.fail, self.calls, self.intact = fail, [], True

    def sync(self, state, full: bool) -> None:  # type: ignore[no-untyped-def]
        self.calls.append(full)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("iptables-restore: boom")

    def cleanup(self) -> None: ...

    def tables_intact(self) -> bool:
        return self.intact


def test_runner_retries_failures_with_full_sync_and_resyncs_on_lost_canary() -> None:
    async def go() -> None:
        be = FlakyBackend(fail=2)
        r = SyncRunner(ChangeTracker("node1"), be, min_interval=0.01, full_interval=30, canary_interval=0.05)
        task = asyncio.create_task(r.run())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if r.syncs >= 1:
                break
        assert be.calls[:3] == [True, True, True] and r.failures == 2 and r.syncs == 1
        be.intact = False
        for _ in range(100):
            await asyncio.sleep(0.01)
            if r.syncs >= 2:
                break
        assert r.syncs >= 2 and be.calls[-1] is True
        task.cancel()
    asyncio.run(go())


def test_run_proxy_with_fake_api_programs_rules_quickly() -> None:
    from netkube.testing.fake_api import FakeApiClient

    async def go() -> None:
        api, ipt, runners = FakeApiClient(), FakeIptables(), []
        await api.create(SERVICES, service("ns1", "svc1", "10.96.0.41"))
        task = asyncio.create_task(run_proxy(api, ClusterConfig(), "node1", NODE_IP, iptables=ipt,  # type: ignore[arg-type]
                                             runner_out=runners))
        await asyncio.sleep(0.3)
        assert '"ns1/svc1:p80 has no endpoints"' in ipt.save("filter")
        await api.create(ENDPOINTSLICES, endpoint_slice("ns1", "svc1", ["10.244.1.5"]))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while "10.244.1.5:80" not in ipt.save("nat") and loop.time() - t0 < 2:
            await asyncio.sleep(0.02)
        assert loop.time() - t0 < 1.0
        tr = Tracer(ipt.save("nat") + ipt.save("filter"))
        assert tr.trace(Packet("10.244.0.9", "10.96.0.41", 80, in_iface="cni0")).targets() == {"10.244.1.5:80": 1.0}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(go())


def test_change_during_sync_is_not_lost_by_ack() -> None:
    """A slice update that arrives between snapshot() and ack() must stay pending."""
    from proxy_modes.testing import endpoint_slice, service
    from proxy_modes.tracker import ChangeTracker

    t = ChangeTracker("node1")
    t.on_service("ADDED", service("ns1", "svc1", "172.30.0.41"))
    t.on_endpoint_slice("ADDED", endpoint_slice("ns1", "svc1", ["10.180.0.1"]))
    first = t.snapshot()
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns1", "svc1", ["10.180.0.1", "10.180.0.2"]))
    t.ack(first)
    assert t.pending, "the second slice change was dropped by ack()"
    second = t.snapshot()
    assert [str(e) for e in next(iter(second.endpoints.values()))] == ["10.180.0.1:80", "10.180.0.2:80"]
    t.ack(second)
    assert not t.pending


# --- partial and full syncs write only differences, and end where a fresh full sync ends ----------

def all_saved(ipt: FakeIptables) -> str:
    return ipt.save("filter") + ipt.save("nat") + ipt.save("mangle")


def fresh_full(t: ChangeTracker) -> str:
    """What a new proxier's full sync of the same state programs into empty tables."""
    ipt = FakeIptables()
    IptablesProxier(ipt, CFG).sync(t.snapshot(), full=True)
    return all_saved(ipt)


def step(t: ChangeTracker, *events: tuple[str, dict]) -> None:
    for etype, o in events:
        (t.on_service if o["kind"] == "Service" else t.on_endpoint_slice)(etype, o)


def many(t: ChangeTracker, n: int) -> None:
    for i in range(n):
        feed(t, service(f"ns{i}", f"svc{i}", f"172.30.1.{i + 1}"), endpoint_slice(f"ns{i}", f"svc{i}", [f"10.180.1.{i + 1}"]))


def synced(n: int) -> tuple[FakeIptables, ChangeTracker, IptablesProxier]:
    """n services fully synced (and acknowledged) by a new proxier."""
    ipt, t = FakeIptables(), ChangeTracker("node1")
    px = IptablesProxier(ipt, CFG)
    many(t, n)
    s = t.snapshot()
    px.sync(s, full=True)
    t.ack(s)
    return ipt, t, px


# Each step changes a few services; the order of service names puts changes before, between and after
# unchanged ones, so inserted rules land at every kind of position in the shared chains.
STEPS: list[list[tuple[str, dict]]] = [
    [("ADDED", service("ns3", "new", "172.30.0.50", svc_type="NodePort", node_ports=[30050])),
     ("ADDED", endpoint_slice("ns3", "new", ["10.180.0.50", "10.180.0.51"]))],
    [("MODIFIED", endpoint_slice("ns5", "svc5", ["10.180.1.6", "10.180.9.9"]))],  # endpoints only
    [("DELETED", endpoint_slice("ns0", "svc0", ["10.180.1.1"]))],  # no endpoints left: REJECT in filter
    [("ADDED", endpoint_slice("ns0", "svc0", ["10.180.1.1"])),
     ("DELETED", service("ns7", "svc7", "172.30.1.8"))],
    [("MODIFIED", service("ns2", "svc2", "172.30.1.3", svc_type="NodePort", node_ports=[30002],
                          externalTrafficPolicy="Local", externalIPs=["203.0.113.7"])),
     ("MODIFIED", endpoint_slice("ns2", "svc2", ["10.180.1.3", "10.180.2.3"], node={"10.180.1.3": "node1"}))],
    [("MODIFIED", service("ns4", "svc4", "172.30.1.5", sessionAffinity="ClientIP")),
     ("ADDED", service("zz", "last", "172.30.0.99", svc_type="NodePort", node_ports=[30099],
                       externalIPs=["203.0.113.9"]))],
    [("DELETED", service("ns3", "new", "172.30.0.50")), ("DELETED", endpoint_slice("ns3", "new", []))],
]


def test_partial_syncs_end_exactly_where_a_full_sync_ends() -> None:
    ipt, t, px = synced(10)
    for i, events in enumerate(STEPS):
        step(t, *events)
        s = t.snapshot()
        px.sync(s, full=False)
        t.ack(s)
        assert all_saved(ipt) == fresh_full(t), f"after step {i}"
        if i == 1:  # one service's endpoints: its own chains only, the shared chains untouched
            assert ":KUBE-SERVICES" not in ipt.restores[-1] and "*filter" not in ipt.restores[-1]
    px.sync(t.snapshot(), full=True)
    assert all_saved(ipt) == fresh_full(t)


def test_partial_sync_edits_shared_chains_in_place() -> None:
    ipt, t, px = synced(20)
    step(t, ("ADDED", service("ns15", "b", "172.30.0.77")), ("ADDED", endpoint_slice("ns15", "b", ["10.180.0.77"])))
    px.sync(t.snapshot(), full=False)
    last = ipt.restores[-1]
    # One new rule inserted at its sorted place (after ns14..., ns15/b before ns15/svc15), no chain rewrite.
    assert [ln for ln in last.splitlines() if "KUBE-SERVICES" in ln] == [
        '-I KUBE-SERVICES 8 -m comment --comment "ns15/b:p80 cluster IP" -m tcp -p tcp -d 172.30.0.77 --dport 80 '
        "-j KUBE-SVC-" + last.split("-j KUBE-SVC-")[-1].split()[0]]
    assert all_saved(ipt) == fresh_full(t)


def test_full_sync_rewrites_only_what_drifted() -> None:
    ipt, t = FakeIptables(), ChangeTracker("node1")
    px = IptablesProxier(ipt, CFG)
    many(t, 5)
    px.sync(t.snapshot(), full=True)
    px.sync(t.snapshot(), full=True)  # reads back what it wrote: nothing to do
    assert len(ipt.restores) == 1
    good = all_saved(ipt)
    svc = "KUBE-SVC-" + good.split("-j KUBE-SVC-")[1].split()[0]
    ipt.restore(f"*nat\n-A {svc} -j RETURN\nCOMMIT\n")  # someone adds a rule to one of our chains
    ipt.restore('*nat\n-D POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING\nCOMMIT\n')
    ipt.restore("*nat\n:KUBE-SVC-LEFTOVER - [0:0]\nCOMMIT\n")
    px.sync(t.snapshot(), full=True)
    assert all_saved(ipt) == good
    repair = ipt.restores[-1]
    assert f":{svc} - [0:0]" in repair and "-X KUBE-SVC-LEFTOVER" in repair
    # Only the drifted chain and the flushed leftover: no other service chain rewritten.
    assert repair.count(":KUBE-SVC-") == 2 and ":KUBE-SEP-" not in repair and ":KUBE-SERVICES" not in repair


def test_restart_over_old_rules_and_retry_after_failure_match_full_sync() -> None:
    ipt, t = FakeIptables(), ChangeTracker("node1")
    many(t, 6)
    IptablesProxier(ipt, CFG).sync(t.snapshot(), full=True)
    step(t, ("DELETED", service("ns1", "svc1", "172.30.1.2")),
         ("MODIFIED", endpoint_slice("ns3", "svc3", ["10.180.7.7"])))
    px = IptablesProxier(ipt, CFG, batch_lines=4)  # a new process, over the old process's rules
    px.sync(t.snapshot(), full=True)
    assert all_saved(ipt) == fresh_full(t)
    assert px.restores > 2  # small batches of per-service chains, then the shared chains
    step(t, ("MODIFIED", endpoint_slice("ns4", "svc4", ["10.180.8.8"])))
    before = all_saved(ipt)
    ipt.fail_next_restore = "iptables-restore: line 2 failed"
    with pytest.raises(Exception, match="line 2 failed"):
        px.sync(t.snapshot(), full=False)
    assert all_saved(ipt) == before
    px.sync(t.snapshot(), full=True)  # what the sync runner does next
    assert all_saved(ipt) == fresh_full(t)


class FailNth(FakeIptables):
    """Refuses the n-th restore from now (a later run of a batched sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.countdown = 0

    def restore(self, text: str, noflush: bool = True) -> None:
        self.countdown -= 1
        if self.countdown == 0:
            self.fail_next_restore = "iptables-restore: line 7 failed"
        super().restore(text, noflush)


def test_batched_sync_failing_midway_is_repaired_by_the_next_full_sync() -> None:
    ipt, t = FailNth(), ChangeTracker("node1")
    many(t, 8)
    px = IptablesProxier(ipt, CFG, batch_lines=10)
    px.sync(t.snapshot(), full=True)
    step(t, *STEPS[0], *STEPS[4])
    for i in range(1, 4):
        ipt.countdown = 2  # the first run applies, the second is refused, the rest are skipped
        n = len(ipt.restores)
        with pytest.raises(Exception, match="line 7 failed"):
            px.sync(t.snapshot(), full=True)
        assert len(ipt.restores) == n + 2, f"round {i}: runs after the failed one must not start"
    px.sync(t.snapshot(), full=True)
    assert all_saved(ipt) == fresh_full(t)


def test_partial_sync_of_many_services_rewrites_the_shared_chain_once() -> None:
    ipt, t, px = synced(70)
    for i in range(70):  # every service gets another port: every KUBE-SERVICES rule changes
        step(t, ("MODIFIED", service(f"ns{i}", f"svc{i}", f"172.30.1.{i + 1}", ports=[("p80", 81, "TCP")])))
    px.sync(t.snapshot(), full=False)
    last = ipt.restores[-1]
    assert ":KUBE-SERVICES - [0:0]" in last and "-D KUBE-SERVICES" not in last
    assert all_saved(ipt) == fresh_full(t)
