"""kube-proxy's entry point for the node agent: informers → change tracker → sync runner → backend."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
from collections.abc import Callable

from netkube.client import ENDPOINTSLICES, SERVICES, ApiClient, Informer, Obj
from netkube.config import MASQ_MARK, ClusterConfig, ConfigError
from netkube.supervise import gather_cancelling
from proxy_modes.backend import Backend
from proxy_modes.conntrack import RealConntrack
from proxy_modes.kernel.iptables import Iptables, RealIptables
from proxy_modes.kernel.nft import Nft, RealNft
from proxy_modes.programming import ProgrammingLatency
from proxy_modes.syncrunner import SyncRunner
from proxy_modes.tracker import ChangeTracker

log = logging.getLogger(__name__)
MODES = ("iptables", "nftables", "userspace", "ipvs")
FULL_SYNC_PERIOD = 3600.0


def resolve_mode(mode: str, probe: Callable[[], str | None] | None = None) -> str:
    """The mode kube-proxy will really run: "ipvs" falls back to iptables on a kernel without IPVS,
    as upstream kube-proxy did (and the tutorials describe), with upstream's error wording."""
    if mode != "ipvs":
        return mode
    from proxy_modes.kernel.ipvs import probe as ipvs_probe

    reason = (probe or ipvs_probe)()
    if reason is None:
        return mode
    log.error("can't use the IPVS proxier: %s; falling back to the iptables proxier", reason)
    return "iptables"


def cleanup_other_modes(mode: str, iptables: Iptables | None = None, nft: Nft | None = None) -> None:
    """Switching modes: each other backend removes exactly what it owns (data-driven cleanups).

    With fakes (tests) only the given fakes are cleaned; real kernels only when none is given."""
    from proxy_modes.iptables.cleanup import cleanup as ipt_cleanup
    from proxy_modes.nftables.cleanup import cleanup as nft_cleanup
    from proxy_modes.userspace.proxier import cleanup as us_cleanup

    real = iptables is None and nft is None
    ipt = iptables if iptables is not None else (RealIptables() if real else None)
    nf = nft if nft is not None else (RealNft() if real else None)
    try:
        if mode != "ipvs":
            # First, and keeping the chains iptables mode shares (its own cleanup below removes them
            # when it is not the active mode): their references would make deleting them fail.
            _cleanup_ipvs(ipt, real)
        if mode != "iptables" and ipt is not None:
            ipt_cleanup(ipt)
        if mode != "userspace" and ipt is not None:
            us_cleanup(ipt)
        if mode != "nftables" and nf is not None:
            nft_cleanup(nf)
    except (OSError, RuntimeError) as e:  # e.g. the nft binary is missing: nothing of it to clean
        log.warning("cleaning up other proxy modes: %s", e)


def _cleanup_ipvs(ipt: Iptables | None, real: bool) -> None:
    """ipvs mode's leftovers: with fakes only the iptables part; on a real kernel also its ipsets,
    virtual servers and kube-ipvs0 (each part skipped quietly where this kernel lacks it)."""
    from proxy_modes.ipvs.cleanup import cleanup as ipvs_cleanup
    from proxy_modes.kernel.ipset import RealIpset
    from proxy_modes.kernel.ipvs import RealIpvs
    from proxy_modes.kernel.links import RealLinks

    if not real:
        ipvs_cleanup(ipt, None, None, None, shared=False)
        return
    ipset = RealIpset() if shutil.which("ipset") else None
    ipvs_cleanup(ipt, ipset, RealIpvs(), RealLinks(), shared=False)


def make_backend(mode: str, cluster: ClusterConfig, node_name: str, node_ip: str,
                 iptables: Iptables | None = None, nft: Nft | None = None) -> Backend:
    if mode not in MODES:
        raise ConfigError(f"proxy mode {mode!r} is not available; choose one of: {', '.join(MODES)}")
    if mode == "nftables":
        from proxy_modes.nftables.proxier import NftablesProxier
        from proxy_modes.nftables.render import RenderConfig as NftConfig

        ncfg = NftConfig(node_name, (node_ip,), str(ipaddress.IPv4Network(cluster.pod_cidr)),
                         str(ipaddress.IPv4Network(cluster.service_cidr)), MASQ_MARK.bit_length() - 1)
        fake = iptables is not None or nft is not None
        return NftablesProxier(nft or RealNft(), ncfg, None if fake else RealConntrack())
    if mode == "ipvs":
        return _ipvs_backend(cluster, node_name, node_ip, iptables)
    if mode == "userspace":
        from proxy_modes.userspace.proxier import UserspaceProxier

        return UserspaceProxier(iptables or RealIptables(), node_ip)
    from proxy_modes.iptables.proxier import IptablesProxier
    from proxy_modes.iptables.render import RenderConfig

    cfg = RenderConfig(node_name, (node_ip,), str(ipaddress.IPv4Network(cluster.pod_cidr)),
                       MASQ_MARK.bit_length() - 1)
    # A fake iptables (tests) comes without a real conntrack; the real one gets the real tool.
    conntrack = RealConntrack() if iptables is None else None
    return IptablesProxier(iptables or RealIptables(), cfg, conntrack)


def _ipvs_backend(cluster: ClusterConfig, node_name: str, node_ip: str, iptables: Iptables | None) -> Backend:
    from proxy_modes.ipvs.desired import IpvsConfig
    from proxy_modes.ipvs.proxier import IpvsProxier
    from proxy_modes.kernel.ipset import RealIpset
    from proxy_modes.kernel.ipvs import RealIpvs
    from proxy_modes.kernel.links import RealLinks
    from proxy_modes.kernel.sysctl import RealSysctl

    cfg = IpvsConfig(node_name, (node_ip,), str(ipaddress.IPv4Network(cluster.pod_cidr)),
                     str(ipaddress.IPv4Network(cluster.service_cidr)),
                     getattr(cluster, "ipvs_scheduler", "rr") or "rr", MASQ_MARK.bit_length() - 1)
    conntrack = RealConntrack() if iptables is None else None
    return IpvsProxier(RealIpvs(), RealIpset(), iptables or RealIptables(), RealLinks(), RealSysctl(), cfg, conntrack)


async def run_proxy(client: ApiClient, cluster: ClusterConfig, node_name: str, node_ip: str,
                    mode: str = "iptables", iptables: Iptables | None = None,
                    runner_out: list[SyncRunner] | None = None) -> None:
    """Run until cancelled. `runner_out`, if given, receives the SyncRunner (for tests/metrics)."""
    if iptables is None:
        mode = await asyncio.to_thread(resolve_mode, mode)  # probes the kernel only when it is real
    backend = make_backend(mode, cluster, node_name, node_ip, iptables)
    # Switching modes: the others' leftovers go first (their own data-driven cleanups; ours untouched).
    await asyncio.to_thread(cleanup_other_modes, mode, iptables)
    tracker = ChangeTracker(node_name)
    latency = ProgrammingLatency()
    # Full rewrites hourly, as upstream's FullSyncPeriod; between them only changed services are
    # written (a full rewrite of 1k services in flight would hold up the next change by ~1 s).
    runner = SyncRunner(tracker, backend, full_interval=FULL_SYNC_PERIOD, latency=latency)
    if runner_out is not None:
        runner_out.append(runner)

    def on_service(etype: str, obj: Obj, old: Obj | None) -> None:
        tracker.on_service(etype, obj, old)
        runner.request()

    def on_slice(etype: str, obj: Obj, old: Obj | None) -> None:
        tracker.on_endpoint_slice(etype, obj, old)
        latency.on_slice(etype, obj, old)
        runner.request()

    services = Informer(client, SERVICES)
    slices = Informer(client, ENDPOINTSLICES)
    services.add_handler(on_service)
    slices.add_handler(on_slice)
    log.info("kube-proxy (%s mode) starting on %s (%s)", mode, node_name, node_ip)
    tasks = [asyncio.create_task(services.run()), asyncio.create_task(slices.run()),
             asyncio.create_task(runner.run([services.synced, slices.synced]))]
    await gather_cancelling(tasks)
