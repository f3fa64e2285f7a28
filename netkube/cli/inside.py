"""`netkube exec`, `node-exec` and `capture`: run a command inside a pod's or node's namespaces."""

from __future__ import annotations

import asyncio
import os
import sys

from netkube.client import PODS, ApiError, cluster_client
from netkube.config import ClusterConfig, ConfigError


async def _get_pod(cluster: ClusterConfig, namespace: str, name: str) -> dict:
    client = cluster_client(cluster, "admin")
    try:
        return await client.get(PODS, name, namespace)
    except ApiError as e:
        if e.code == 404:
            raise ConfigError(f'pod "{name}" not found in namespace "{namespace}"') from None
        raise
    finally:
        await client.close()


def pod_netns(cluster: ClusterConfig, namespace: str, name: str) -> str:
    pod = asyncio.run(_get_pod(cluster, namespace, name))
    return cluster.pod_netns(pod["metadata"]["uid"])


def exec_in_pod(cluster: ClusterConfig, namespace: str, name: str, argv: list[str], container: str | None) -> int:
    from netkube.kubelet.podstate import find_exec_target

    pod = asyncio.run(_get_pod(cluster, namespace, name))
    node = pod.get("spec", {}).get("nodeName")
    if not node or not pod.get("status", {}).get("podIP"):
        raise ConfigError(f'pod "{name}" is not running yet (phase {pod.get("status", {}).get("phase", "Pending")})')
    pid = find_exec_target(cluster, node, pod["metadata"]["uid"], container)
    # As with `kubectl exec`, the command gets the container's environment (its PATH finds the
    # image's tools, e.g. busybox's nslookup, not the host's).
    env = container_env(pid)
    os.execve(sys.executable, [sys.executable, "-m", "netkube.kubelet.nsexec", "--target", str(pid), "--", *argv],
              {**env, "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "TERM": os.environ.get("TERM", "xterm")})
    return 127  # not reached


def container_env(pid: int) -> dict[str, str]:
    try:
        raw = open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        return dict(os.environ)
    env = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env or dict(os.environ)


def exec_in_node(cluster: ClusterConfig, node: str, argv: list[str]) -> int:
    if node not in cluster.node_names:
        raise ConfigError(f"no node {node!r} in cluster {cluster.name!r}; nodes: {', '.join(cluster.node_names)}")
    os.execvp("ip", ["ip", "netns", "exec", cluster.node_netns(node), *argv])
    return 127


def exec_in_client(cluster: ClusterConfig, argv: list[str]) -> int:
    """The external client on the underlay (.200): NodePorts and LoadBalancer IPs as from outside."""
    os.execvp("ip", ["ip", "netns", "exec", cluster.client_netns, *argv])
    return 127


def capture(cluster: ClusterConfig, target: str, namespace: str, iface: str | None, write: str | None,
            count: int | None, extra: list[str]) -> int:
    if target.startswith("node/"):
        node = target.removeprefix("node/")
        if node not in cluster.node_names:
            raise ConfigError(f"no node {node!r}; nodes: {', '.join(cluster.node_names)}")
        ns = cluster.node_netns(node)
    else:
        ns = pod_netns(cluster, namespace, target.removeprefix("pod/"))
    argv = ["ip", "netns", "exec", ns, "tcpdump", "-n", "-i", iface or ("eth0" if not target.startswith("node/") else "any")]
    if write:
        argv += ["-w", write]
    else:
        argv += ["-l"]
    if count:
        argv += ["-c", str(count)]
    argv += extra
    os.execvp("ip", argv)
    return 127
