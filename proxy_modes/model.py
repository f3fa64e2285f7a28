"""Service ports and endpoints as kube-proxy sees them, built from Service and EndpointSlice dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

DEFAULT_AFFINITY_TIMEOUT = 10800  # upstream v1.DefaultClientIPServiceAffinitySeconds
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, order=True)
class ServicePortName:
    """Identity of one port of one Service: "<ns>/<name>:<port name>" plus protocol."""

    namespace: str
    name: str
    port: str  # may be "" for a single unnamed port; the trailing ":" stays, as upstream
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"

    @property
    def service(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def proto(self) -> str:
        return self.protocol.lower()


@dataclass(frozen=True)
class ServicePort:
    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    affinity_timeout: int | None = None  # None: no ClientIP session affinity
    external_policy_local: bool = False
    internal_policy_local: bool = False

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    is_local: bool = False

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass
class ProxyState:
    """Everything a backend needs for one sync. `changed` holds "<ns>/<name>" of changed services."""

    services: dict[ServicePortName, ServicePort] = field(default_factory=dict)
    endpoints: dict[ServicePortName, list[Endpoint]] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    stale_udp_services: list[ServicePort] = field(default_factory=list)  # went from 0 to N endpoints
    stale_udp_endpoints: list[tuple[ServicePort, str]] = field(default_factory=list)  # (svc, removed ep IP)


def service_ports(svc: Obj) -> dict[ServicePortName, ServicePort]:
    """The ports kube-proxy programs for a Service; headless and ExternalName give none."""
    md, spec = svc.get("metadata", {}), svc.get("spec", {})
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or cluster_ip in ("", "None"):
        return {}
    ns, name = md.get("namespace", "default"), md["name"]
    svc_type = spec.get("type", "ClusterIP")
    affinity: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    external_ips = tuple(spec.get("externalIPs") or ())
    lb_ips: tuple[str, ...] = ()
    if svc_type == "LoadBalancer":
        ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = tuple(i["ip"] for i in ingress if i.get("ip"))
    # Upstream: the external policy only matters for services reachable from outside.
    externally = svc_type in ("NodePort", "LoadBalancer") or bool(external_ips)
    ext_local = externally and spec.get("externalTrafficPolicy") == "Local"
    int_local = spec.get("internalTrafficPolicy") == "Local"
    out: dict[ServicePortName, ServicePort] = {}
    for p in spec.get("ports") or []:
        spn = ServicePortName(ns, name, p.get("name") or "", (p.get("protocol") or "TCP").upper())
        node_port = int(p.get("nodePort") or 0) if svc_type in ("NodePort", "LoadBalancer") else 0
        out[spn] = ServicePort(
            spn, cluster_ip, int(p["port"]), node_port, external_ips, lb_ips, affinity, ext_local, int_local
        )
    return out


def slice_endpoints(eps: Obj, node_name: str) -> dict[ServicePortName, list[Endpoint]]:
    """Endpoints per service port from one discovery.k8s.io/v1 EndpointSlice (IPv4 only)."""
    md = eps.get("metadata", {})
    svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not svc or eps.get("addressType", "IPv4") != "IPv4":
        return {}
    ns = md.get("namespace", "default")
    out: dict[ServicePortName, list[Endpoint]] = {}
    for p in eps.get("ports") or []:
        if p.get("port") is None:
            continue
        spn = ServicePortName(ns, svc, p.get("name") or "", (p.get("protocol") or "TCP").upper())
        lst = out.setdefault(spn, [])
        for e in eps.get("endpoints") or []:
            addrs = e.get("addresses") or []
            if not addrs:
                continue
            cond = e.get("conditions") or {}
            # API semantics: an unset "ready" means ready; "serving" defaults to "ready".
            ready = cond.get("ready") is not False
            serving = cond.get("serving", ready) is not False
            node = e.get("nodeName") or ""
            lst.append(
                Endpoint(addrs[0], int(p["port"]), ready, serving, bool(cond.get("terminating")), node,
                         bool(node) and node == node_name)
            )
    return out


def usable(endpoints: list[Endpoint], local_only: bool = False) -> list[Endpoint]:
    """Ready endpoints; if none, serving+terminating ones (upstream ProxyTerminatingEndpoints)."""
    pool = [e for e in endpoints if e.is_local] if local_only else list(endpoints)
    ready = [e for e in pool if e.ready]
    return ready or [e for e in pool if e.serving and e.terminating]
