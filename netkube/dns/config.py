"""What the resolver is told to do: server blocks with kubernetes, forward and cache settings."""

from __future__ import annotations

from dataclasses import dataclass, field

REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")


def in_zone(name: str, zone: str) -> bool:
    """`name` (lower case, no trailing dot) is `zone` or below it; "" is the root zone."""
    return not zone or name == zone or name.endswith("." + zone)


@dataclass(frozen=True)
class Kubernetes:
    zones: tuple[str, ...] = ("cluster.local",) + REVERSE_ZONES
    ttl: int = 5
    pods: str = "disabled"  # disabled | insecure | verified, as CoreDNS's `pods` option
    fallthrough: tuple[str, ...] | None = None  # None: off; (): every zone

    @property
    def cluster_zone(self) -> str:
        return next((z for z in self.zones if not z.endswith(REVERSE_ZONES)), "cluster.local")

    def falls_through(self, name: str) -> bool:
        if self.fallthrough is None:
            return False
        return not self.fallthrough or any(in_zone(name, z) for z in self.fallthrough)


@dataclass(frozen=True)
class Forward:
    zone: str  # FROM ("" = the root)
    to: tuple[tuple[str, int], ...]
    exclude: tuple[str, ...] = ()  # `except` domains
    force_tcp: bool = False

    def matches(self, name: str) -> bool:
        return in_zone(name, self.zone) and not any(in_zone(name, z) for z in self.exclude)


@dataclass(frozen=True)
class Cache:
    success_ttl: int = 3600  # CoreDNS's cache maxima and minima
    denial_ttl: int = 1800
    success_min: int = 5
    denial_min: int = 5
    capacity: int = 9984


@dataclass(frozen=True)
class Block:
    zones: tuple[str, ...]  # lower case, no trailing dot; "" is the root
    port: int = 53
    kubernetes: Kubernetes | None = None
    forward: Forward | None = None
    cache: Cache | None = None
    loadbalance: bool = False
    reload: bool = False
    plugins: tuple[str, ...] = ()


@dataclass(frozen=True)
class DnsConfig:
    blocks: tuple[Block, ...]
    source: str = "built-in defaults"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def route(self, name: str) -> tuple[Block, str] | None:
        """The server block answering `name` and the zone it matched (longest suffix), or None."""
        best: tuple[Block, str] | None = None
        for b in self.blocks:
            for z in b.zones:
                if in_zone(name, z) and (best is None or len(z) > len(best[1])):
                    best = (b, z)
        return best


def default_config(zone: str = "cluster.local", ttl: int = 5,
                   upstreams: tuple[tuple[str, int], ...] = (), forward: bool = False) -> DnsConfig:
    """The configuration used while no `coredns` ConfigMap exists (see docs/dns.md).

    `forward` without `upstreams` forwards to whatever Forwarder the DnsServer was given.
    """
    zone = zone.strip(".").lower()
    if upstreams or forward:
        kube = Kubernetes((zone, *REVERSE_ZONES), ttl, "insecure", REVERSE_ZONES)
        block = Block(("",), kubernetes=kube, forward=Forward("", upstreams), cache=Cache(30, 30))
    else:
        kube = Kubernetes((zone, *REVERSE_ZONES), ttl, "insecure", None)
        block = Block((zone, *REVERSE_ZONES), kubernetes=kube)
    return DnsConfig((block,))
