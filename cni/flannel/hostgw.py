"""The host-gw backend: per remote node a plain route to its subnet via its node IP (same L2 segment)."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from cni.flannel.netlink import Route, VxlanNetlink
from cni.flannel.vxlan import ANN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    name: str
    subnet: str  # "10.244.2.0/24"
    public_ip: str


class NotOnLink(Exception):
    """A peer's node IP is not on a directly connected subnet: host-gw cannot reach it."""


def peer_of(node: dict[str, Any]) -> Peer | None:
    md, spec = node.get("metadata", {}), node.get("spec", {})
    ann = md.get("annotations") or {}
    cidr, ip = spec.get("podCIDR"), ann.get(ANN + "public-ip")
    if not cidr or not ip or ann.get(ANN + "backend-type") != "host-gw":
        return None
    try:
        return Peer(md["name"], str(ipaddress.IPv4Network(cidr, strict=False)), str(ipaddress.IPv4Address(ip)))
    except (ValueError, KeyError):
        log.warning("node %s has malformed flannel annotations; skipping it", md.get("name"))
        return None


def check_on_link(peers: list[Peer], local_addrs: set[str], dev: str) -> dict[str, str]:
    """Messages for peers whose next hop is not on a subnet of dev (upstream flannel would fail the
    route add with 'network is unreachable'); empty when all share this node's L2 segment."""
    nets = [ipaddress.IPv4Interface(a).network for a in local_addrs]
    return {p.name: f"host-gw: node {p.name} ({p.public_ip}) is not on a directly connected subnet of {dev} "
            f"({', '.join(map(str, nets)) or 'no addresses'}); host-gw needs all nodes on one L2 segment — "
            f"use the vxlan backend (netkube network install flannel-vxlan) instead"
            for p in peers if not any(ipaddress.IPv4Address(p.public_ip) in n for n in nets)}


def reconcile(nl: VxlanNetlink, peers: list[Peer], dev: str, cluster_net: str) -> list[str]:
    """Make dev's routes into the cluster network exactly those of the on-link peers; returns the
    refusals. Routes outside cluster_net (the node's own default route, ...) are never touched."""
    refused = check_on_link(peers, nl.addrs(dev), dev)
    want = {Route(p.subnet, p.public_ip) for p in peers if p.name not in refused}
    net = ipaddress.IPv4Network(cluster_net)
    have = {r for r in nl.routes(dev) if ipaddress.IPv4Network(r.dst).subnet_of(net)}
    for r in have - want:
        nl.del_route(r, dev)
    for r in want - have:
        nl.add_route(r, dev)
    return list(refused.values())
