"""nftables proxier on the fake nft: bounded transactions, partial syncs, stale objects, failures, runner."""

from __future__ import annotations

from netkube.config import ClusterConfig
from proxy_modes.kernel.nft_fake import FakeNft
from proxy_modes.model import Endpoint
from proxy_modes.nftables import names as N
from proxy_modes.nftables.proxier import NftablesProxier
from proxy_modes.runner import make_backend
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet
from proxy_modes.tracer_nft import NftTracer
from tests.unit.test_proxy_nft_fixtures import CFG, NODE_IP, P80, POD, overall_tracker


def _targets(f: FakeNft, dst: str) -> dict[str, float]:
    return NftTracer(f.list_table("ip", "kube-proxy")).trace(Packet(POD, dst, 80, "tcp", "cni0", (NODE_IP,))).targets()


def test_full_sync_in_several_transactions_then_switch() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG, batch_lines=10)  # tiny batches: many transactions, each must stand alone
    px.sync(overall_tracker().snapshot(), full=True)
    assert px.transactions > 4
    assert f.scripts[-1].startswith(f"flush set {N.T} cluster-ips")  # the switch comes last
    assert _targets(f, "172.30.0.44") == {"10.180.0.4:80": 0.5, "10.180.0.5:80": 0.5}
    px.sync(overall_tracker().snapshot(), full=True)  # resync over existing chains: flushed, not duplicated
    chain = f.tables[("ip", "kube-proxy")].chains["service-ULMVA6XW-ns1/svc1/tcp/p80"]
    assert len(chain.rules) == 2


def test_partial_sync_touches_only_the_changed_service_and_removes_stale_chains() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    t = overall_tracker()
    st = t.snapshot()
    px.sync(st, full=True)
    t.ack(st)
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
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    t = overall_tracker()
    st = t.snapshot()
    px.sync(st, full=True)
    t.ack(st)
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


def test_cleanup_deletes_the_table_and_canary_notices() -> None:
    f = FakeNft()
    px = NftablesProxier(f, CFG)
    px.sync(overall_tracker().snapshot(), full=True)
    assert px.tables_intact()
    px.cleanup()
    assert not f.tables and not px.tables_intact()
    px.cleanup()  # idempotent


def test_runner_selects_nftables_with_a_fake() -> None:
    f = FakeNft()
    be = make_backend("nftables", ClusterConfig(), "node1", NODE_IP, nft=f)
    assert isinstance(be, NftablesProxier)
    be.sync(overall_tracker().snapshot(), full=True)
    assert ("ip", "kube-proxy") in f.tables
