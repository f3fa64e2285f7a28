"""host-local range sets: parsing, defaults and the iteration order (as upstream's allocator)."""

from __future__ import annotations

import ipaddress
from collections import namedtuple
from collections.abc import Iterator

from cni.spec import ERR_INVALID_CONFIG, CniError

IP = ipaddress.IPv4Address


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Range(namedtuple("Range", "subnet start end gateway")):  # noqa: PYI024
    """subnet: IPv4Network; start, end, gateway: IPv4Address. A plain namedtuple, not typing's
    (a fresh interpreter per plugin run: see cni.spec.Args on start-up cost)."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def contains(self, ip: IP) -> bool:
        return self.start <= ip <= self.end


def _ip(value: Any, what: str) -> IP:
    try:
        return IP(str(value))
    except ValueError:
        raise CniError(ERR_INVALID_CONFIG, f"invalid {what} {value!r}", "use a dotted IPv4 address") from None


def parse_range(r: dict[str, Any]) -> Range:
    try:
        subnet = ipaddress.IPv4Network(str(r.get("subnet", "")), strict=False)
    except ValueError as e:
        raise CniError(ERR_INVALID_CONFIG, f"invalid range subnet {r.get('subnet')!r}", str(e)) from None
    if subnet.prefixlen > 30:
        raise CniError(ERR_INVALID_CONFIG, f"network {subnet} too small to allocate from")
    # Never the network address or the broadcast address.
    first, last = subnet.network_address + 1, subnet.broadcast_address - 1
    start = _ip(r["rangeStart"], "rangeStart") if r.get("rangeStart") else first
    end = _ip(r["rangeEnd"], "rangeEnd") if r.get("rangeEnd") else last
    gateway = _ip(r["gateway"], "gateway") if r.get("gateway") else first
    for name, ip in (("rangeStart", start), ("rangeEnd", end)):
        if not first <= ip <= last:
            raise CniError(ERR_INVALID_CONFIG, f"{name} {ip} not in network {subnet}")
    if start > end:
        raise CniError(ERR_INVALID_CONFIG, f"rangeStart {start} is after rangeEnd {end}")
    return Range(subnet, start, end, gateway)


def parse_ipam(ipam: dict[str, Any]) -> list[list[Range]]:
    """ipam.ranges (list of range sets), or the legacy single ipam.subnet form."""
    raw = ipam.get("ranges")
    if raw is None and ipam.get("subnet"):
        raw = [[{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}]]
    if not raw or not isinstance(raw, list):
        raise CniError(ERR_INVALID_CONFIG, "no IP ranges specified", 'set ipam.ranges: [[{"subnet": "10.244.1.0/24"}]]')
    sets = []
    for rs in raw:
        if not isinstance(rs, list) or not rs:
            raise CniError(ERR_INVALID_CONFIG, "each entry of ipam.ranges must be a non-empty list of ranges")
        sets.append([parse_range(r) for r in rs])
    return sets


def rangeset_str(rs: list[Range]) -> str:
    return ",".join(str(r) for r in rs)


def iterate(rs: list[Range], last_reserved: IP | None) -> Iterator[tuple[IP, Range]]:
    """Every candidate once, starting just after last_reserved (round robin), skipping gateways."""
    ri, ip = 0, rs[0].start
    if last_reserved is not None:
        for i, r in enumerate(rs):
            if r.contains(last_reserved):
                ri, ip = i, last_reserved + 1
                if ip > r.end:
                    ri = (i + 1) % len(rs)
                    ip = rs[ri].start
                break
    total = sum(int(r.end) - int(r.start) + 1 for r in rs)
    for _ in range(total):
        r = rs[ri]
        if ip != r.gateway:
            yield ip, r
        if ip >= r.end:
            ri = (ri + 1) % len(rs)
            ip = rs[ri].start
        else:
            ip += 1
