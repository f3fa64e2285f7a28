"""An in-memory VxlanNetlink that refuses what the kernel refuses (EEXIST, ENODEV, ESRCH, ENOENT)."""

from __future__ import annotations

import errno
import ipaddress
import itertools

from cni.flannel.netlink import LinkState, Route


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{what}: {errno.errorcode[code]}")


class FakeNetlink:
    def __init__(self) -> None:
        self.links: dict[str, LinkState] = {}
        self.vxlan: dict[str, dict[str, object]] = {}
        self._addrs: dict[str, set[str]] = {}
        self._routes: dict[str, set[Route]] = {}
        self._neighs: dict[str, dict[str, str]] = {}
        self._fdbs: dict[str, dict[str, str]] = {}
        self._next = itertools.count(2)
        self.calls: list[str] = []

    def add_physical(self, name: str, mtu: int = 1500) -> None:
        idx = next(self._next)
        self.links[name] = LinkState(idx, f"02:00:00:00:00:{idx:02x}", mtu, True)
        self._addrs[name], self._routes[name], self._neighs[name], self._fdbs[name] = set(), set(), {}, {}

    def _need(self, name: str) -> None:
        if name not in self.links:
            raise _err(errno.ENODEV, f"device {name}")

    def get_link(self, name: str) -> LinkState | None:
        return self.links.get(name)

    def add_vxlan(self, name: str, vni: int, port: int, local: str, dev: str, mtu: int) -> None:
        if name in self.links:
            raise _err(errno.EEXIST, f"link {name}")
        self._need(dev)
        if mtu > self.links[dev].mtu:
            raise _err(errno.EINVAL, f"mtu {mtu} above lower device")
        self.calls.append(f"add_vxlan {name}")
        self.add_physical(name, mtu)
        self.links[name] = LinkState(self.links[name].index, self.links[name].mac, mtu, False)
        self.vxlan[name] = {"vni": vni, "port": port, "local": local, "dev": dev, "learning": False}

    def set_up(self, name: str) -> None:
        self._need(name)
        s = self.links[name]
        self.links[name] = LinkState(s.index, s.mac, s.mtu, True)

    def addrs(self, name: str) -> set[str]:
        self._need(name)
        return set(self._addrs[name])

    def add_addr(self, name: str, cidr: str) -> None:
        self._need(name)
        ipaddress.IPv4Interface(cidr)
        if cidr in self._addrs[name]:
            raise _err(errno.EEXIST, f"address {cidr}")
        self._addrs[name].add(cidr)

    def routes(self, name: str) -> set[Route]:
        self._need(name)
        return set(self._routes[name])

    def add_route(self, route: Route, dev: str) -> None:
        self._need(dev)
        ipaddress.IPv4Network(route.dst)  # strict: host bits set is EINVAL in the kernel
        if any(r.dst == route.dst for rs in self._routes.values() for r in rs):
            raise _err(errno.EEXIST, f"route {route.dst}")
        self.calls.append(f"add_route {route.dst} via {route.gw}")
        self._routes[dev].add(route)

    def del_route(self, route: Route, dev: str) -> None:
        self._need(dev)
        if route not in self._routes[dev]:
            raise _err(errno.ESRCH, f"route {route.dst}")
        self.calls.append(f"del_route {route.dst}")
        self._routes[dev].discard(route)

    def neighs(self, name: str) -> dict[str, str]:
        self._need(name)
        return dict(self._neighs[name])

    def set_neigh(self, ip: str, mac: str, dev: str) -> None:
        self._need(dev)
        self._neighs[dev][ip] = mac

    def del_neigh(self, ip: str, dev: str) -> None:
        self._need(dev)
        if ip not in self._neighs[dev]:
            raise _err(errno.ENOENT, f"neighbour {ip}")
        del self._neighs[dev][ip]

    def fdbs(self, name: str) -> dict[str, str]:
        self._need(name)
        return dict(self._fdbs[name])

    def set_fdb(self, mac: str, dst: str, dev: str) -> None:
        self._need(dev)
        self._fdbs[dev][mac] = dst

    def del_fdb(self, mac: str, dst: str, dev: str) -> None:
        self._need(dev)
        if self._fdbs[dev].get(mac) != dst:
            raise _err(errno.ENOENT, f"fdb {mac} dst {dst}")
        del self._fdbs[dev][mac]
