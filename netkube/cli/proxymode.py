"""`netkube proxy-mode MODE`: edit ConfigMap kube-system/kube-proxy and wait until every node switched."""

from __future__ import annotations

import asyncio
import time

from netkube.addons import kubeproxy
from netkube.client import CONFIGMAPS, NODES, ApiError, cluster_client
from netkube.config import ClusterConfig, ConfigError


async def _switch(cluster: ClusterConfig, mode: str, timeout: float) -> dict[str, float]:
    client = cluster_client(cluster, "admin")
    t0 = time.monotonic()
    try:
        try:
            cm = await client.get(CONFIGMAPS, kubeproxy.NAME, kubeproxy.NAMESPACE)
            await client.patch(CONFIGMAPS, kubeproxy.NAME, {"data": {kubeproxy.KEY: kubeproxy.with_mode(cm, mode)}},
                               kubeproxy.NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            await client.create(CONFIGMAPS, kubeproxy.configmap(cluster, mode))
        switched: dict[str, float] = {}
        while time.monotonic() - t0 < timeout:
            for n in (await client.list(NODES)).get("items", []):
                name = n["metadata"]["name"]
                if (n["metadata"].get("annotations") or {}).get(kubeproxy.MODE_ANNOTATION) == mode:
                    switched.setdefault(name, time.monotonic() - t0)
            if set(cluster.node_names) <= set(switched):
                return switched
            await asyncio.sleep(0.1)
        missing = sorted(set(cluster.node_names) - set(switched))
        raise TimeoutError(f"nodes {', '.join(missing)} did not switch to {mode} within {timeout:.0f}s; "
                           f"see {cluster.log_dir}/agent-<node>.log")
    except OSError as e:
        raise ConfigError(f"cannot reach the apiserver of {cluster.name!r} at {cluster.api_url_host}: {e}") from e
    finally:
        await client.close()


def set_proxy_mode(cluster: ClusterConfig, mode: str, timeout: float = 30.0) -> int:
    from proxy_modes.runner import MODES

    if mode not in MODES:
        raise ConfigError(f"proxy mode {mode!r} is not available; choose one of: {', '.join(MODES)}")
    old = cluster.proxy_mode
    switched = asyncio.run(_switch(cluster, mode, timeout))
    cluster.proxy_mode = mode
    cluster.save()  # cluster.json follows, so `netkube rules`/`trace`/`status` read the live mode
    for node in sorted(switched):
        print(f"{node}: {mode} ({switched[node]:.2f}s)")
    print(f"cluster {cluster.name!r}: proxy mode {old} -> {mode}; ConfigMap kube-system/kube-proxy says mode: {mode}")
    return 0
