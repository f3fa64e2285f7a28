"""The node agent: kubelet, kube-proxy and flannel for one node, run inside that node's netns."""

from __future__ import annotations

import asyncio
import logging
import signal

from netkube.client import cluster_client
from netkube.config import ClusterConfig
from netkube.lab.records import Records
from netkube.supervise import supervise

log = logging.getLogger("netkube.agent")


class NodeAgent:
    def __init__(self, cluster: ClusterConfig, node: str, api_url: str | None = None, *,
                 node_ip: str | None = None, iface: str = "eth0") -> None:
        self.cluster = cluster
        self.node = node
        self.node_ip = node_ip or cluster.node_ip(node)
        self.iface = iface  # the node network interface: eth0 in the emulator, e.g. eth1 on a Vagrant VM
        self.api_url = api_url or cluster.api_url_nodes

    async def run(self) -> None:
        from cni.flannel.daemon import FlannelDaemon
        from netkube.agent.proxymode import ProxyModeSwitcher
        from netkube.agent.speaker import IpAddresses, Speaker
        from netkube.kubelet.kubelet import Kubelet

        # the node's own client certificate (CN=system:node:<node>, O=system:nodes), as a kubelet's
        client = cluster_client(self.cluster, f"nodes/{self.node}", self.api_url)
        records = Records(self.cluster.records_path)
        kubelet = Kubelet(client, self.cluster, self.node, self.node_ip, records)
        flannel = FlannelDaemon(client, self.cluster, self.node, self.node_ip, self.cluster.node_dir(self.node),
                                iface=self.iface)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        components = {
            "kubelet": kubelet.run,
            "flannel": flannel.run,
            # kube-proxy in the mode ConfigMap kube-system/kube-proxy names, switched live on edits.
            "kube-proxy": ProxyModeSwitcher(client, self.cluster, self.node, self.node_ip).run,
            # MetalLB-style L2 speaker: the elected node holds each LoadBalancer IP on its eth0.
            "speaker": Speaker(client, self.cluster, self.node, IpAddresses(self.iface)).run,
        }
        tasks = [asyncio.create_task(supervise(name, fn), name=name) for name, fn in components.items()]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
