"""Node IPAM: give each Node the next free /24 of the cluster pod CIDR, in registration order."""

from __future__ import annotations

import ipaddress
import logging

from netkube.client import NODES, ApiError, Obj
from netkube.config import ClusterConfig
from netkube.controllers.base import Informers
from netkube.controllers.events import EventRecorder
from netkube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)
NODE_PREFIX = 24


class CIDRExhausted(RuntimeError):
    pass


def next_free_cidr(pod_cidr: str, used: set[str], prefix: int = NODE_PREFIX) -> str:
    for net in ipaddress.IPv4Network(pod_cidr).subnets(new_prefix=prefix):
        if str(net) not in used:
            return str(net)
    raise CIDRExhausted(f"pod CIDR {pod_cidr} has no free /{prefix} left; recreate the cluster with a larger "
                        f"--pod-cidr (e.g. a /16)")


def registration_order(nodes: list[Obj]) -> list[Obj]:
    # creationTimestamp has 1 s resolution; the name (node1 < node2) breaks ties deterministically.
    return sorted(nodes, key=lambda n: (n["metadata"].get("creationTimestamp", ""),
                                        len(n["metadata"]["name"]), n["metadata"]["name"]))


class NodeIpamController:
    def __init__(self, client: object, informers: Informers, cluster: ClusterConfig) -> None:
        self.client = client
        self.inf = informers
        self.cluster = cluster
        self.queue = WorkQueue("nodeipam", max_backoff=30.0)
        self.recorder = EventRecorder(client, "node-controller")  # type: ignore[arg-type]
        self._assigned: dict[str, str] = {}  # our own patches, until the informer shows them

    def register(self) -> None:
        self.inf.nodes.add_handler(lambda t, n, o: self.queue.add("all") if t != "DELETED" else None)

    async def run(self) -> None:
        await self.queue.run(self.sync, workers=1)  # one worker: allocations must not race each other

    async def sync(self, _key: str) -> None:
        nodes = registration_order(self.inf.nodes.items())
        # Rebuilt from the nodes each time, so a restart keeps every existing assignment.
        used = {n["spec"]["podCIDR"] for n in nodes if n.get("spec", {}).get("podCIDR")}
        names = {n["metadata"]["name"] for n in nodes}
        self._assigned = {k: v for k, v in self._assigned.items() if k in names}
        used |= set(self._assigned.values())
        for node in nodes:
            if node.get("spec", {}).get("podCIDR") or node["metadata"]["name"] in self._assigned:
                continue
            try:
                cidr = next_free_cidr(self.cluster.pod_cidr, used)
            except CIDRExhausted as e:
                await self.recorder.warning(node, "CIDRNotAvailable", str(e))
                log.error("nodeipam: %s", e)
                return
            try:
                await self.client.patch(NODES, node["metadata"]["name"],  # type: ignore[attr-defined]
                                        {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
            except ApiError as e:
                if e.code == 404:
                    continue
                raise
            used.add(cidr)
            self._assigned[node["metadata"]["name"]] = cidr
            await self.recorder.normal(node, "RegisteredNode",
                                       f"Node {node['metadata']['name']} event: Registered Node "
                                       f"{node['metadata']['name']} in Controller")
