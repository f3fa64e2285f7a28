"""The netlink operations the flannel daemon needs: a Protocol and its pyroute2 implementation."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any, Protocol

NUD_PERMANENT = 0x80
RTNH_F_ONLINK = 4
NTF_SELF = 2  # the vxlan device's own FDB, not a bridge master's


@dataclass(frozen=True)
class LinkState:
    index: int
    mac: str
    mtu: int
    up: bool


@dataclass(frozen=True)
class Route:
    dst: str  # "10.244.2.0/24"
    gw: str


class VxlanNetlink(Protocol):
    def get_link(self, name: str) -> LinkState | None: ...
    def add_vxlan(self, name: str, vni: int, port: int, local: str, dev: str, mtu: int) -> None: ...
    def set_up(self, name: str) -> None: ...
    def addrs(self, name: str) -> set[str]: ...
    def add_addr(self, name: str, cidr: str) -> None: ...
    def routes(self, name: str) -> set[Route]: ...
    def add_route(self, route: Route, dev: str) -> None: ...
    def del_route(self, route: Route, dev: str) -> None: ...
    def neighs(self, name: str) -> dict[str, str]: ...
    def set_neigh(self, ip: str, mac: str, dev: str) -> None: ...
    def del_neigh(self, ip: str, dev: str) -> None: ...
    def fdbs(self, name: str) -> dict[str, str]: ...
    def set_fdb(self, mac: str, dst: str, dev: str) -> None: ...
    def del_fdb(self, mac: str, dst: str, dev: str) -> None: ...


class PyRoute2Netlink:
    """VxlanNetlink on pyroute2's IPRoute in the current netns (the node's)."""

    def __init__(self) -> None:
        self._ipr: Any = None

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()

    def _index(self, name: str) -> int:
        found = self.ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(errno.ENODEV, f"no such device {name}")
        return int(found[0])

    def get_link(self, name: str) -> LinkState | None:
        found = self.ipr.link_lookup(ifname=name)
        if not found:
            return None
        m = self.ipr.get_links(found[0])[0]
        return LinkState(int(found[0]), m.get("IFLA_ADDRESS"), int(m.get("IFLA_MTU")), bool(m["flags"] & 1))

    def add_vxlan(self, name: str, vni: int, port: int, local: str, dev: str, mtu: int) -> None:
        self.ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_port=port, vxlan_local=local,
                      vxlan_link=self._index(dev), vxlan_learning=0, mtu=mtu)

    def set_up(self, name: str) -> None:
        self.ipr.link("set", index=self._index(name), state="up")

    def addrs(self, name: str) -> set[str]:
        idx = self._index(name)
        return {f"{a.get('IFA_LOCAL') or a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in self.ipr.get_addr(family=socket.AF_INET, index=idx)}

    def add_addr(self, name: str, cidr: str) -> None:
        ip, plen = cidr.split("/")
        self.ipr.addr("add", index=self._index(name), address=ip, prefixlen=int(plen))

    def routes(self, name: str) -> set[Route]:
        out = set()
        for r in self.ipr.get_routes(family=socket.AF_INET, oif=self._index(name), table=254):
            dst, gw = r.get("RTA_DST"), r.get("RTA_GATEWAY")
            if dst and gw:
                out.add(Route(f"{dst}/{r['dst_len']}", gw))
        return out

    def add_route(self, route: Route, dev: str) -> None:
        self.ipr.route("add", dst=route.dst, gateway=route.gw, oif=self._index(dev), flags=RTNH_F_ONLINK,
                       proto=3)  # RTPROT_BOOT, what flannel (netlink defaults) installs

    def del_route(self, route: Route, dev: str) -> None:
        self.ipr.route("del", dst=route.dst, gateway=route.gw, oif=self._index(dev))

    def neighs(self, name: str) -> dict[str, str]:
        return {n.get("NDA_DST"): n.get("NDA_LLADDR")
                for n in self.ipr.get_neighbours(family=socket.AF_INET, ifindex=self._index(name))
                if n["state"] & NUD_PERMANENT}

    def set_neigh(self, ip: str, mac: str, dev: str) -> None:
        self.ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=self._index(dev), state=NUD_PERMANENT)

    def del_neigh(self, ip: str, dev: str) -> None:
        self.ipr.neigh("del", dst=ip, ifindex=self._index(dev))

    def fdbs(self, name: str) -> dict[str, str]:
        idx = self._index(name)
        return {f.get("NDA_LLADDR"): f.get("NDA_DST") for f in self.ipr.fdb("dump", ifindex=idx)
                if f["ifindex"] == idx and f.get("NDA_DST")}

    def set_fdb(self, mac: str, dst: str, dev: str) -> None:
        self.ipr.fdb("replace", ifindex=self._index(dev), lladdr=mac, dst=dst, state=NUD_PERMANENT, flags=NTF_SELF)

    def del_fdb(self, mac: str, dst: str, dev: str) -> None:
        self.ipr.fdb("del", ifindex=self._index(dev), lladdr=mac, dst=dst, flags=NTF_SELF)
