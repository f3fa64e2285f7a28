"""Trimmed Service/EndpointSlice records the resolver keeps (the rest of the object is dropped)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# EndpointSlices point at their Service through this well-known label.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    protocol: str  # "TCP", "UDP" or "SCTP"


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    cluster_ips: tuple[str, ...]  # empty for headless and ExternalName services
    headless: bool
    external_name: str | None
    ports: tuple[Port, ...]


@dataclass(frozen=True)
class Endpoint:
    ip: str
    hostname: str | None
    ready: bool


@dataclass(frozen=True)
class Slice:
    name: str
    namespace: str
    service: str
    endpoints: tuple[Endpoint, ...]
    ports: tuple[Port, ...]


def _ports(raw: list[Obj] | None, key: str) -> tuple[Port, ...]:
    out = []
    for p in raw or []:
        num = p.get(key)
        if isinstance(num, int):
            out.append(Port(p.get("name") or "", num, p.get("protocol") or "TCP"))
    return tuple(out)


def trim_service(obj: Obj) -> Service:
    md, spec = obj["metadata"], obj.get("spec", {})
    ext = spec.get("externalName") if spec.get("type") == "ExternalName" else None
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    headless = ext is None and (spec.get("clusterIP") == "None" or ips == ["None"])
    real_ips = tuple(ip for ip in ips if ip and ip != "None") if ext is None else ()
    return Service(md["name"], md.get("namespace", "default"), real_ips, headless, ext,
                   _ports(spec.get("ports"), "port"))


def trim_slice(obj: Obj) -> Slice | None:
    """None for slices that belong to no Service or carry FQDN addresses (never served)."""
    md = obj["metadata"]
    svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not svc or obj.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
        return None
    eps = []
    for ep in obj.get("endpoints") or []:
        # discovery/v1: a nil "ready" condition must be read as ready.
        ready = (ep.get("conditions") or {}).get("ready") is not False
        for ip in ep.get("addresses") or []:
            eps.append(Endpoint(ip, ep.get("hostname") or None, ready))
    return Slice(md["name"], md.get("namespace", "default"), svc, tuple(eps), _ports(obj.get("ports"), "port"))
