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
    assert len(ipt.restores) == 2  # exactly one iptables-restore per sync
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
