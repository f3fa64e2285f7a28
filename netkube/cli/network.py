"""`netkube network install`: the pod network as an add-on (kube-flannel's namespace + ConfigMap)."""

from __future__ import annotations

import asyncio
import json
import time

from netkube.client import CONFIGMAPS, NAMESPACES, NODES, ApiClient, ApiError
from netkube.config import ClusterConfig, ConfigError


async def install(client: ApiClient, network: str, pod_cidr: str) -> str:
    """Create kube-flannel + kube-flannel-cfg (what `kubectl apply -f kube-flannel.yml` makes that the
    node agents act on). Returns "created" or "unchanged"; a different backend already installed is a
    user error, since switching a live network would strand every pod's routes."""
    from cni import netconf

    try:
        ns, cm = netconf.manifests(network, pod_cidr)
    except netconf.NetConfError as e:
        raise ConfigError(str(e)) from None
    try:
        await client.create(NAMESPACES, ns)
    except ApiError as e:
        if e.code != 409:
            raise
    try:
        await client.create(CONFIGMAPS, cm, netconf.NAMESPACE)
        return "created"
    except ApiError as e:
        if e.code != 409:
            raise
    have = await client.get(CONFIGMAPS, netconf.CONFIGMAP, netconf.NAMESPACE)
    old = (have.get("data") or {}).get(netconf.NET_CONF_KEY, "")
    try:
        old_type = json.loads(old).get("Backend", {}).get("Type")
    except (ValueError, AttributeError):
        old_type = None
    if old_type == netconf.BACKENDS[network]:
        return "unchanged"
    raise ConfigError(f"a pod network is already installed (ConfigMap {netconf.NAMESPACE}/{netconf.CONFIGMAP}, "
                      f"backend {old_type!r}); changing the backend of a running cluster is not supported — "
                      f"create a new cluster with `netkube up --network {network}`")


async def wait_ready(client: ApiClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    not_ready = list(names)
    while time.monotonic() < deadline:
        items = (await client.list(NODES)).get("items", [])
        ready = {n["metadata"]["name"] for n in items
                 if any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in n.get("status", {}).get("conditions", []))}
        not_ready = [n for n in names if n not in ready]
        if not not_ready:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"nodes not Ready {timeout:.0f}s after installing the network: {not_ready}; "
                       f"see the agent logs in the state dir's logs/ (flannel: lines)")


def install_cmd(cluster: ClusterConfig, network: str, timeout: float) -> int:
    from netkube.client import cluster_client

    async def run() -> str:
        client = cluster_client(cluster, "admin")
        try:
            t0 = time.monotonic()
            what = await install(client, network, cluster.pod_cidr)
            await wait_ready(client, cluster.node_names, timeout)
            return f"{what}; {len(cluster.node_names)} node(s) Ready in {time.monotonic() - t0:.1f}s"
        finally:
            await client.close()

    print(f"network {network}: {asyncio.run(run())}")
    return 0
