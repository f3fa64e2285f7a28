"""kube-proxy's entry point for the node agent: informers → change tracker → sync runner → backend."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from netkube.client import ENDPOINTSLICES, SERVICES, ApiClient, Informer, Obj
from netkube.config import MASQ_MARK, ClusterConfig, ConfigError
from netkube.supervise import gather_cancelling
from proxy_modes.backend import Backend
from proxy_modes.conntrack import RealConntrack
from proxy_modes.kernel.iptables import Iptables, RealIptables
from proxy_modes.kernel.nft import Nft, RealNft
from proxy_modes.syncrunner import SyncRunner
from proxy_modes.tracker import ChangeTracker

log = logging.getLogger(__name__)
MODES = ("iptables", "nftables", "userspace")


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
        if mode != "iptables" and ipt is not None:
            ipt_cleanup(ipt)
        if mode != "userspace" and ipt is not None:
            us_cleanup(ipt)
        if mode != "nftables" and nf is not None:
            nft_cleanup(nf)
    except (OSError, RuntimeError) as e:  # e.g. the nft binary is missing: nothing of it to clean
        log.warning("cleaning up other proxy modes: %s", e)


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


async def run_proxy(client: ApiClient, cluster: ClusterConfig, node_name: str, node_ip: str,
                    mode: str = "iptables", iptables: Iptables | None = None,
                    runner_out: list[SyncRunner] | None = None) -> None:
    """Run until cancelled. `runner_out`, if given, receives the SyncRunner (for tests/metrics)."""
    backend = make_backend(mode, cluster, node_name, node_ip, iptables)
    # Switching modes: the others' leftovers go first (their own data-driven cleanups; ours untouched).
    await asyncio.to_thread(cleanup_other_modes, mode, iptables)
    tracker = ChangeTracker(node_name)
    runner = SyncRunner(tracker, backend)
    if runner_out is not None:
        runner_out.append(runner)

    def on_service(etype: str, obj: Obj, old: Obj | None) -> None:
        tracker.on_service(etype, obj, old)
        runner.request()

    def on_slice(etype: str, obj: Obj, old: Obj | None) -> None:
        tracker.on_endpoint_slice(etype, obj, old)
        runner.request()

    services = Informer(client, SERVICES)
    slices = Informer(client, ENDPOINTSLICES)
    services.add_handler(on_service)
    slices.add_handler(on_slice)
    log.info("kube-proxy (%s mode) starting on %s (%s)", mode, node_name, node_ip)
    tasks = [asyncio.create_task(services.run()), asyncio.create_task(slices.run()),
             asyncio.create_task(runner.run([services.synced, slices.synced]))]
    await gather_cancelling(tasks)
