"""The kube-ipvs0 dummy interface: its addresses (service IPs as /32), real (pyroute2) and fake."""

from __future__ import annotations

import errno
from typing import Any, Protocol


class LinkError(RuntimeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


class DummyLinks(Protocol):
    def ensure_dummy(self, name: str) -> bool:
        """Create the dummy link if missing (left down, as upstream); True if it existed."""

    def addresses(self, name: str) -> set[str]:
        """IPv4 addresses on the link (without prefix length); empty if the link is missing."""

    def add_address(self, name: str, ip: str) -> None: ...

    def del_address(self, name: str, ip: str) -> None: ...

    def delete_link(self, name: str) -> bool:
        """Delete the link if present; True if it was there."""


class RealLinks:
    """pyroute2.IPRoute in the current netns (the agent's) or attached to a named one (tests)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _ipr(self) -> Any:
        from pyroute2 import IPRoute

        return IPRoute(netns=self.netns, flags=0) if self.netns else IPRoute()

    def _index(self, ipr: Any, name: str) -> int | None:
        found = ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def ensure_dummy(self, name: str) -> bool:
        from pyroute2.netlink.exceptions import NetlinkError

        with self._ipr() as ipr:
            if self._index(ipr, name) is not None:
                return True
            try:
                ipr.link("add", ifname=name, kind="dummy")
            except NetlinkError as e:
                # EOPNOTSUPP: this kernel has no dummy link type (CONFIG_DUMMY unset, module missing).
                raise LinkError(e.code, f"creating dummy interface {name}: {e}") from None
            return False

    def addresses(self, name: str) -> set[str]:
        with self._ipr() as ipr:
            idx = self._index(ipr, name)
            if idx is None:
                return set()
            return {a.get("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}

    def _addr(self, op: str, name: str, ip: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        with self._ipr() as ipr:
            idx = self._index(ipr, name)
            if idx is None:
                raise LinkError(errno.ENODEV, f"{name}: no such device")
            try:
                ipr.addr(op, index=idx, address=ip, prefixlen=32)
            except NetlinkError as e:
                raise LinkError(e.code, f"{op} {ip}/32 on {name}: {e}") from None

    def add_address(self, name: str, ip: str) -> None:
        self._addr("add", name, ip)

    def del_address(self, name: str, ip: str) -> None:
        self._addr("del", name, ip)

    def delete_link(self, name: str) -> bool:
        with self._ipr() as ipr:
            idx = self._index(ipr, name)
            if idx is None:
                return False
            ipr.link("del", index=idx)
            return True


class FakeLinks:
    """Links and addresses in memory; refuses like the kernel (EEXIST, EADDRNOTAVAIL, ENODEV)."""

    def __init__(self, dummy_supported: bool = True) -> None:
        self.dummy_supported = dummy_supported
        self.links: dict[str, set[str]] = {}

    def ensure_dummy(self, name: str) -> bool:
        if name in self.links:
            return True
        if not self.dummy_supported:
            raise LinkError(errno.EOPNOTSUPP, f"creating dummy interface {name}: Operation not supported")
        self.links[name] = set()
        return False

    def addresses(self, name: str) -> set[str]:
        return set(self.links.get(name, set()))

    def add_address(self, name: str, ip: str) -> None:
        if name not in self.links:
            raise LinkError(errno.ENODEV, f"{name}: no such device")
        if ip in self.links[name]:
            raise LinkError(errno.EEXIST, f"add {ip}/32 on {name}: File exists")
        self.links[name].add(ip)

    def del_address(self, name: str, ip: str) -> None:
        if ip not in self.links.get(name, set()):
            raise LinkError(errno.EADDRNOTAVAIL, f"del {ip}/32 on {name}: Cannot assign requested address")
        self.links[name].discard(ip)

    def delete_link(self, name: str) -> bool:
        return self.links.pop(name, None) is not None
