"""`netkube rules NODE`: the node's kube-proxy rules for the active mode, as the kernel holds them."""

from __future__ import annotations

from netkube.config import ClusterConfig
from netkube.debug.live import check_node, rules_text


def print_rules(cluster: ClusterConfig, node: str) -> int:
    from netkube.debug.trace import load_world

    check_node(cluster, node)
    mode = load_world(cluster).mode(cluster, node)
    tool = {"nftables": "nft list table ip kube-proxy", "ipvs": "ipvsadm -Ln; ipset list; iptables-save -t nat"}.get(
        mode, "iptables-save -t filter; iptables-save -t nat")
    print(f"# {cluster.name}/{node}, proxy mode {mode}: {tool}")
    print(rules_text(cluster, node, mode), end="")
    return 0
