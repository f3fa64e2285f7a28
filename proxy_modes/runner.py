"""kube-proxy's entry point for the node agent: informers → change tracker → sync runner → backend."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from netkube.client import ENDPOINTSLICES, SERVICES, ApiClient, Informer, Obj
from netkube.config import MASQ_MARK, ClusterConfig, ConfigError
from proxy_modes.backend import Backend
from proxy_modes.conntrack import RealConntrack
from proxy_modes.kernel.iptables import Iptables, RealIptables
from proxy_modes.syncrunner import SyncRunner
from proxy_modes.tracker import ChangeTracker

log = logging.getLogger(__name__)
MODES = ("iptables",)


def make_backend(mode: str, cluster: ClusterConfig, node_name: str, node_ip: str,
                 iptables: Iptables | None = None) -> Backend:
    if mode != "iptables":
        raise ConfigError(f"proxy mode {mode!r} is not available yet; choose one of: {', '.join(MODES)}")
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
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
