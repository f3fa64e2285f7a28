"""Round robin over a shuffled endpoint list, with ClientIP affinity and a TTL (upstream roundrobin.go)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Balancer:
    endpoints: list[str] = field(default_factory=list)  # "ip:port"
    index: int = 0
    affinity_ttl: int | None = None
    affinity: dict[str, tuple[str, float]] = field(default_factory=dict)  # client IP → (endpoint, last used)


class RoundRobin:
    """Endpoint choice per service port; the proxy calls next_endpoint() for each connection/session."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.rng = rng or random.Random()
        self._svc: dict[str, _Balancer] = {}

    def update(self, key: str, endpoints: list[str], affinity_ttl: int | None) -> None:
        b = self._svc.setdefault(key, _Balancer())
        if sorted(endpoints) != sorted(b.endpoints):
            eps = list(endpoints)
            self.rng.shuffle(eps)  # upstream shuffles on every change so proxies do not all start at one pod
            b.endpoints, b.index = eps, 0
            b.affinity = {c: v for c, v in b.affinity.items() if v[0] in eps}
        b.affinity_ttl = affinity_ttl

    def remove(self, key: str) -> None:
        self._svc.pop(key, None)

    def next_endpoint(self, key: str, client_ip: str, skip: set[str] | None = None) -> str | None:
        b = self._svc.get(key)
        if b is None or not b.endpoints:
            return None
        now = self.clock()
        if b.affinity_ttl is not None and not skip:
            hit = b.affinity.get(client_ip)
            if hit and now - hit[1] < b.affinity_ttl and hit[0] in b.endpoints:
                b.affinity[client_ip] = (hit[0], now)
                return hit[0]
        for _ in range(len(b.endpoints)):
            ep = b.endpoints[b.index % len(b.endpoints)]
            b.index = (b.index + 1) % len(b.endpoints)
            if not skip or ep not in skip:
                if b.affinity_ttl is not None:
                    b.affinity[client_ip] = (ep, now)
                return ep
        return None
