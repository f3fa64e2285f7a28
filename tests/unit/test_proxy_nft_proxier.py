"""nftables proxier on the fake nft: bounded transactions, partial syncs, stale objects, failures, runner."""

from __future__ import annotations

from dataclasses import replace

import pytest

from netkube.config import ClusterConfig
from proxy_modes.kernel.nft_fake import FakeNft
from proxy_modes.model import Endpoint
from proxy_modes.nftables import names as N
from proxy_modes.nftables.proxier import NftablesProxier
from proxy_modes.runner import make_backend
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet
from proxy_modes.tracer_nft import NftTracer
from proxy_modes.tracker import ChangeTracker
from tests.unit.test_proxy_nft_fixtures import CFG, NODE_IP, P80, POD, overall_tracker


def _targets(f: FakeNft, dst: str) -> dict[str, float]:
    return NftTracer(f.list_table("ip", "kube-proxy")).trace(Packet(POD, dst, 80, "tcp", "cni0", (NODE_IP,))).targets()


def test_full_sync_in_several_transactions_then_switch() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG, batch_lines=3)  # tiny batches: many transactions, each must stand alone
    px.sync(overall_tracker().snapshot(), full=True)
    assert px.transactions > 6
    assert f.scripts[-1].startswith(f"flush set {N.T} cluster-ips")  # the switch comes last
    assert _targets(f, "172.30.0.44") == {"10.180.0.4:80": 0.5, "10.180.0.5:80": 0.5}
    px.sync(overall_tracker().snapshot(), full=True)  # resync over existing chains: flushed, not duplicated
    chain = f.tables[("ip", "kube-proxy")].chains["service-ULMVA6XW-ns1/svc1/tcp/p80"]
    assert len(chain.rules) == 2



def synced() -> tuple[FakeNft, NftablesProxier, ChangeTracker]:
    """The overall tracker's services fully synced (and acknowledged) by a new proxier."""
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    t = overall_tracker()
    st = t.snapshot()
    px.sync(st, full=True)
    t.ack(st)
    return f, px, t

def test_partial_sync_touches_only_the_changed_service_and_removes_stale_chains() -> None:
    f, px, t = synced()
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns4", "svc4", ["10.180.0.4", "10.180.0.6"], P80))
    n = len(f.scripts)
    px.sync(t.snapshot(), full=False)
    partial = "".join(f.scripts[n:])
    assert "ns4/svc4" in partial and "ns1/svc1" not in partial
    assert len(f.scripts) == n + 1  # one nft run per partial sync
    chains = f.tables[("ip", "kube-proxy")].chains
    stale = [c for c in chains if "10.180.0.5/80" in c]
    assert stale and all(not chains[c].rules for c in stale)  # flushed now (upstream, kernels < 6.2)...
    assert _targets(f, "172.30.0.44") == {"10.180.0.4:80": 0.5, "10.180.0.6:80": 0.5}
    px.sync(t.snapshot(), full=True)
    assert not any("10.180.0.5/80" in c for c in f.tables[("ip", "kube-proxy")].chains)  # ...deleted later


def test_full_sync_skips_unchanged_services() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    st = overall_tracker().snapshot()
    px.sync(st, full=True)
    n = len(f.scripts)
    px.sync(st, full=True)
    again = "".join(f.scripts[n:])
    assert "add chain ip kube-proxy endpoint-" not in again  # no per-service chain rewritten...
    assert "numgen random" not in again
    assert _targets(f, "172.30.0.44") == {"10.180.0.4:80": 0.5, "10.180.0.5:80": 0.5}  # ...still served
    px2 = NftablesProxier(f, CFG)  # a restarted proxy does not know what the chains hold: rewrites
    px2.sync(st, full=True)
    assert "numgen random" in "".join(f.scripts[n + 2:])


def test_service_deleted_and_endpoints_gone_in_partial_sync() -> None:
    f, px, t = synced()
    t.on_service("DELETED", service("ns1", "svc1", "172.30.0.41", P80))
    t.on_endpoint_slice("DELETED", endpoint_slice("ns3", "svc3", ["10.180.0.3"], P80))
    px.sync(t.snapshot(), full=False)
    assert _targets(f, "172.30.0.41") == {"DROP": 1.0}  # unallocated now
    assert _targets(f, "172.30.0.43") == {"REJECT": 1.0}
    chains = f.tables[("ip", "kube-proxy")].chains
    assert all(not chains[c].rules for c in chains if "svc1" in c or "svc3" in c)  # flushed, deleted later
    px.sync(t.snapshot(), full=True)
    assert not any("svc1" in c or "svc3" in c for c in f.tables[("ip", "kube-proxy")].chains)


def test_failed_sync_keeps_old_rules_and_next_full_sync_relists() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    px.sync(overall_tracker().snapshot(), full=True)
    before = f.list_table("ip", "kube-proxy")
    f.fail_next = "Error: Could not process rule: No buffer space available"
    st = overall_tracker().snapshot()
    st.endpoints[sorted(st.services)[0]] = [Endpoint("10.180.0.9", 80)]
    try:
        px.sync(st, full=False)
    except RuntimeError:
        pass
    else:
        raise AssertionError("sync should raise")
    assert f.list_table("ip", "kube-proxy") == before
    px.sync(st, full=True)
    assert _targets(f, "172.30.0.41") == {"10.180.0.9:80": 1.0}


class FailingNft(FakeNft):
    """Refuses the `fail_at`-th transaction from now on (nft's error, nothing of it applied)."""

    fail_at = 0

    def run(self, script: str) -> None:
        self.fail_at -= 1
        if self.fail_at == 0:
            self.fail_next = "Error: Could not process rule: Cannot allocate memory"
        super().run(script)


def test_full_sync_failing_midway_keeps_serving_the_old_rules() -> None:
    f = FailingNft()
    px = NftablesProxier(f, CFG, batch_lines=2)
    t = overall_tracker()
    old = t.snapshot()
    px.sync(old, full=True)
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns4", "svc4", ["10.180.0.6"], P80))
    f.fail_at = 3  # base, one endpoints batch, then a refused one
    with pytest.raises(RuntimeError, match="Cannot allocate memory"):
        px.sync(t.snapshot(), full=True)
    assert px.last_timings and "switch" not in [w for w, _ in px.last_timings]
    assert _targets(f, "172.30.0.44") == {"10.180.0.4:80": 0.5, "10.180.0.5:80": 0.5}  # old rules serve
    px.sync(t.snapshot(), full=True)  # the runner's retry
    assert _targets(f, "172.30.0.44") == {"10.180.0.6:80": 1.0}


def test_cleanup_deletes_the_table_and_canary_notices() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    px.sync(overall_tracker().snapshot(), full=True)
    assert px.tables_intact()
    px.cleanup()
    assert not f.tables and not px.tables_intact()
    px.cleanup()  # idempotent


def test_stale_affinity_set_waits_for_the_full_sync() -> None:
    f, px, t = synced()
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns5", "svc5", ["10.180.0.7"], P80))
    n = len(f.scripts)
    px.sync(t.snapshot(), full=False)
    assert len(f.scripts) == n + 1 and "delete" not in f.scripts[-1]  # deletes make nft list every chain
    old_set = "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"
    table = f.tables[("ip", "kube-proxy")]
    assert old_set in table.sets
    assert not any(old_set in r for c in table.chains.values() for r in c.rules)  # unused already
    assert _targets(f, "172.30.0.45") == {"10.180.0.7:80": 1.0}
    px.sync(t.snapshot(), full=True)
    assert old_set not in f.tables[("ip", "kube-proxy")].sets


def test_table_deleted_behind_our_back_is_recreated() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    st = overall_tracker().snapshot()
    px.sync(st, full=True)
    n = len(f.scripts)
    px.sync(st, full=True)
    assert not any(s.startswith("add table") for s in f.scripts[n:])  # it exists: not declared again
    f.tables.clear()  # e.g. `nft flush ruleset`
    assert not px.tables_intact()
    px.sync(st, full=True)
    assert _targets(f, "172.30.0.44") == {"10.180.0.4:80": 0.5, "10.180.0.5:80": 0.5}


def test_runner_selects_nftables_with_a_fake() -> None:
    f = FakeNft()
    be = make_backend("nftables", ClusterConfig(), "node1", NODE_IP, nft=f)
    assert isinstance(be, NftablesProxier)
    be.sync(overall_tracker().snapshot(), full=True)
    assert ("ip", "kube-proxy") in f.tables


class RecordingNft(FakeNft):
    """Keeps the table listing after every committed transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.listings: list[str] = []

    def run(self, script: str) -> None:
        super().run(script)
        self.listings.append(self.list_table("ip", "kube-proxy"))


def test_full_sync_transaction_order_keeps_every_service_whole() -> None:
    """Old → new state in tiny transactions: after each one, every ClusterIP leads to exactly its
    old or its new endpoints, never to a half-written service, and the phases come in order."""
    t = overall_tracker()
    old = t.snapshot()
    t.on_service("DELETED", service("ns1", "svc1", "172.30.0.41", P80))
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns4", "svc4", ["10.180.0.4", "10.180.0.6", "10.180.0.7"], P80))
    t.on_service("ADDED", service("ns7", "svc7", "172.30.0.47", P80))
    t.on_endpoint_slice("ADDED", endpoint_slice("ns7", "svc7", ["10.180.0.8", "10.180.0.9"], P80))
    new = t.snapshot()
    f = RecordingNft()
    px = NftablesProxier(f, replace(CFG, vmap_max_services=0), batch_lines=2)
    px.sync(old, full=True)
    first = len(f.scripts)
    ips = ["172.30.0.41", "172.30.0.44", "172.30.0.47"]
    before = {ip: _targets(f, ip) for ip in ips}
    px.sync(new, full=True)
    steps = f.listings[first:]
    phases = [w for w, _ in px.last_timings]
    assert phases == sorted(phases, key=["base", "endpoints", "services", "switch", "stale"].index)
    assert phases.count("endpoints") > 1 and phases.count("services") > 1
    after = {ip: NftTracer(steps[-1]).trace(Packet(POD, ip, 80, "tcp", "cni0", (NODE_IP,))).targets() for ip in ips}
    assert after == {"172.30.0.41": {"DROP": 1.0},
                     "172.30.0.44": pytest.approx({f"10.180.0.{i}:80": 1 / 3 for i in (4, 6, 7)}),
                     "172.30.0.47": pytest.approx({"10.180.0.8:80": 0.5, "10.180.0.9:80": 0.5})}
    assert before["172.30.0.44"] == {"10.180.0.4:80": 0.5, "10.180.0.5:80": 0.5}
    for listing in steps:
        for ip in ips:
            got = NftTracer(listing).trace(Packet(POD, ip, 80, "tcp", "cni0", (NODE_IP,))).targets()
            assert got in (before[ip], after[ip]), (ip, got)
    switch = phases.index("switch")
    assert all(NftTracer(x).trace(Packet(POD, "172.30.0.47", 80, "tcp", "cni0", (NODE_IP,))).targets() == {"DROP": 1.0}
               for x in steps[:switch])  # the new service is unreachable until the map switch
    assert any("endpoint-" in c and "10.180.0.5/80" in c for c in f.tables[("ip", "kube-proxy")].chains) is False
