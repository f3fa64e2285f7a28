"""The node agent: kubelet, kube-proxy and flannel for one node, run inside that node's netns."""

from __future__ import annotations

import asyncio
import logging
import signal

from netkube.client import ApiClient
from netkube.config import ClusterConfig
from netkube.lab.records import Records

log = logging.getLogger("netkube.agent")


class NodeAgent:
    def __init__(self, cluster: ClusterConfig, node: str, api_url: str | None = None) -> None:
        self.cluster = cluster
        self.node = node
        self.node_ip = cluster.node_ip(node)
        self.api_url = api_url or cluster.api_url_nodes

    async def run(self) -> None:
        from cni.flannel.daemon import FlannelDaemon
        from netkube.kubelet.kubelet import Kubelet
        from proxy_modes.runner import run_proxy

        client = ApiClient(self.api_url)
        records = Records(self.cluster.records_path)
        kubelet = Kubelet(client, self.cluster, self.node, self.node_ip, records)
        flannel = FlannelDaemon(client, self.cluster, self.node, self.node_ip, self.cluster.node_dir(self.node))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        components = {
            "kubelet": kubelet.run,
            "flannel": flannel.run,
            "kube-proxy": lambda: run_proxy(client, self.cluster, self.node, self.node_ip, self.cluster.proxy_mode),
        }
        tasks = [asyncio.create_task(self._supervise(name, fn), name=name) for name, fn in components.items()]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    async def _supervise(self, name: str, fn) -> None:  # type: ignore[no-untyped-def]
        """A component that crashes is logged and restarted; the agent never dies of one."""
        delay = 0.5
        while True:
            try:
                await fn()
                log.warning("%s returned; restarting", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting in %.1fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
