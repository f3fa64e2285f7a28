"""ClusterIP and NodePort allocation done by the apiserver at Service create, rebuilt from the store."""

from __future__ import annotations

import ipaddress
import random


class AllocationError(Exception):
    """The requested value cannot be allocated; the message is upstream's wording."""


class IPAllocator:
    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.IPv4Network(cidr)
        self.used: set[str] = set()

    def allocate(self, ip: str | None = None) -> str:
        if ip:
            try:
                addr = ipaddress.IPv4Address(ip)
            except ValueError:
                raise AllocationError(f"failed to allocate IP {ip}: not a valid IP address") from None
            # network and broadcast addresses are never handed out
            if addr not in self.net or addr in (self.net.network_address, self.net.broadcast_address):
                raise AllocationError(
                    f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                    f"The range of valid IPs is {self.net}"
                )
            if ip in self.used:
                raise AllocationError(f"failed to allocate IP {ip}: provided IP is already allocated")
            self.used.add(ip)
            return ip
        size = self.net.num_addresses - 2
        if len(self.used) >= size:
            raise AllocationError(f"failed to allocate a serviceIP: range is full ({self.net})")
        base = int(self.net.network_address)
        # random probing, like upstream's bitmap allocator; skip .1 (kubernetes) only when taken
        for _ in range(64):
            cand = str(ipaddress.IPv4Address(base + random.randint(1, size)))
            if cand not in self.used:
                self.used.add(cand)
                return cand
        for off in range(1, size + 1):
            cand = str(ipaddress.IPv4Address(base + off))
            if cand not in self.used:
                self.used.add(cand)
                return cand
        raise AllocationError(f"failed to allocate a serviceIP: range is full ({self.net})")

    def release(self, ip: str | None) -> None:
        if ip:
            self.used.discard(ip)


class PortAllocator:
    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.used: set[int] = set()

    def allocate(self, port: int | None = None) -> int:
        if port:
            if not self.lo <= port <= self.hi:
                raise AllocationError(
                    f"provided port is not in the valid range. The range of valid ports is {self.lo}-{self.hi}"
                )
            if port in self.used:
                raise AllocationError("provided port is already allocated")
            self.used.add(port)
            return port
        free = self.hi - self.lo + 1 - len(self.used)
        if free <= 0:
            raise AllocationError(f"range is full: no free node ports in {self.lo}-{self.hi}")
        for _ in range(64):
            cand = random.randint(self.lo, self.hi)
            if cand not in self.used:
                self.used.add(cand)
                return cand
        for cand in range(self.lo, self.hi + 1):
            if cand not in self.used:
                self.used.add(cand)
                return cand
        raise AllocationError(f"range is full: no free node ports in {self.lo}-{self.hi}")

    def release(self, port: int | None) -> None:
        if port:
            self.used.discard(port)
