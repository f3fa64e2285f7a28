"""The vxlan backend: flannel.1 and, per remote node, a route, a permanent neighbour and an FDB entry."""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Any

from cni.flannel.netlink import Route, VxlanNetlink

log = logging.getLogger(__name__)

DEVICE = "flannel.1"
ANN = "flannel.alpha.coreos.com/"


@dataclass(frozen=True)
class Peer:
    name: str
    subnet: str  # "10.244.2.0/24"
    vtep_mac: str
    public_ip: str

    @property
    def gw(self) -> str:
        return str(ipaddress.IPv4Network(self.subnet, strict=False).network_address)


def peer_of(node: dict[str, Any]) -> Peer | None:
    """A remote node usable for vxlan: podCIDR plus flannel's annotations; None otherwise."""
    md, spec = node.get("metadata", {}), node.get("spec", {})
    ann = md.get("annotations") or {}
    cidr = spec.get("podCIDR")
    if not cidr or ann.get(ANN + "backend-type") != "vxlan" or not ann.get(ANN + "public-ip"):
        return None
    try:
        data = json.loads(ann.get(ANN + "backend-data") or "{}")
        subnet = str(ipaddress.IPv4Network(cidr, strict=False))
        ipaddress.IPv4Address(ann[ANN + "public-ip"])
    except (ValueError, TypeError):
        log.warning("node %s has malformed flannel annotations; skipping it", md.get("name"))
        return None
    mac = data.get("VtepMAC") if isinstance(data, dict) else None
    if not mac:
        return None
    return Peer(md["name"], subnet, str(mac).lower(), ann[ANN + "public-ip"])


def ensure_device(nl: VxlanNetlink, vni: int, port: int, local: str, dev: str, mtu: int, subnet: str) -> str:
    """Create/keep flannel.1 holding <subnet network>/32, up; returns its MAC."""
    if nl.get_link(DEVICE) is None:
        try:
            nl.add_vxlan(DEVICE, vni, port, local, dev, mtu)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
    addr = f"{ipaddress.IPv4Network(subnet, strict=False).network_address}/32"
    if addr not in nl.addrs(DEVICE):
        nl.add_addr(DEVICE, addr)
    nl.set_up(DEVICE)
    link = nl.get_link(DEVICE)
    assert link is not None
    return link.mac


def reconcile(nl: VxlanNetlink, peers: list[Peer]) -> None:
    """Make flannel.1's routes, neighbours and FDB exactly those of peers."""
    want_routes = {Route(p.subnet, p.gw) for p in peers}
    want_neigh = {p.gw: p.vtep_mac for p in peers}
    want_fdb = {p.vtep_mac: p.public_ip for p in peers}
    for r in nl.routes(DEVICE) - want_routes:
        nl.del_route(r, DEVICE)
    have_neigh = nl.neighs(DEVICE)
    for ip in have_neigh.keys() - want_neigh.keys():
        nl.del_neigh(ip, DEVICE)
    have_fdb = nl.fdbs(DEVICE)
    for mac, dst in have_fdb.items():
        if want_fdb.get(mac) != dst:
            nl.del_fdb(mac, dst, DEVICE)
    # Neighbour and FDB before the route, so the first packet already finds its VTEP (as flannel).
    for ip, mac in want_neigh.items():
        if have_neigh.get(ip, "").lower() != mac:
            nl.set_neigh(ip, mac, DEVICE)
    for mac, dst in want_fdb.items():
        if have_fdb.get(mac) != dst:
            nl.set_fdb(mac, dst, DEVICE)
    for r in want_routes - nl.routes(DEVICE):
        nl.add_route(r, DEVICE)
