"""Reading a live cluster for the debug commands: node addresses, rules, and who owns an IP."""

from __future__ import annotations

import json
import subprocess

from netkube.config import ClusterConfig, ConfigError


def in_netns(netns: str, *argv: str, timeout: float = 15) -> str:
    proc = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ConfigError(f"`{' '.join(argv)}` in {netns} failed: {proc.stderr.strip() or proc.stdout.strip()}"
                          f"{' (run `sudo scripts/setup` to install it)' if 'No such file' in proc.stderr else ''}")
    return proc.stdout


def node_addresses(cluster: ClusterConfig, node: str) -> list[str]:
    """Every IPv4 address of the node netns, eth0's primary first (what `addrtype LOCAL` matches)."""
    out = subprocess.run(["ip", "-n", cluster.node_netns(node), "-j", "-4", "addr", "show"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise ConfigError(f"node {node} of cluster {cluster.name!r} is not there ({out.stderr.strip()}); "
                          f"is the cluster up? (`netkube status`)")
    addrs = [a["local"] for link in json.loads(out.stdout or "[]") for a in link.get("addr_info", [])]
    primary = cluster.node_ip(node)
    return [primary, *[a for a in addrs if a != primary]]


def check_node(cluster: ClusterConfig, node: str) -> str:
    if node not in cluster.node_names:
        raise ConfigError(f"no node {node!r} in cluster {cluster.name!r}; nodes: {', '.join(cluster.node_names)}")
    return node


def node_holding(cluster: ClusterConfig, ip: str) -> str | None:
    """The node whose netns owns `ip` (a node IP, or a LoadBalancer IP its speaker holds)."""
    for node in cluster.node_names:
        if ip in node_addresses(cluster, node):
            return node
    return None


def rules_text(cluster: ClusterConfig, node: str, mode: str) -> str:
    """The node's rules for `mode`, as the upstream tools print them."""
    ns = cluster.node_netns(node)
    if mode == "nftables":
        return in_netns(ns, "nft", "list", "table", "ip", "kube-proxy")
    if mode == "ipvs":
        text = in_netns(ns, "ipvsadm", "-Ln") + "\n" + in_netns(ns, "ipset", "list")
        return text + "\n" + in_netns(ns, "iptables-save", "-t", "nat")
    return in_netns(ns, "iptables-save", "-t", "filter") + in_netns(ns, "iptables-save", "-t", "nat")
