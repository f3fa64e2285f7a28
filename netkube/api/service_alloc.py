"""Service ClusterIP/NodePort bookkeeping for create, update and delete (upstream's service REST)."""

from __future__ import annotations

from typing import Any

from ..config import ClusterConfig
from .allocators import AllocationError, IPAllocator, PortAllocator
from .status import ApiStatusError, FieldError, invalid

Obj = dict[str, Any]


def _needs_ip(spec: Obj) -> bool:
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def _needs_node_ports(spec: Obj) -> bool:
    t = spec.get("type")
    return t == "NodePort" or (t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True))


class ServiceAllocations:
    def __init__(self, cluster: ClusterConfig) -> None:
        self.ips = IPAllocator(cluster.service_cidr)
        self.ports = PortAllocator(cluster.node_port_min, cluster.node_port_max)

    def rebuild(self, services: list[Obj]) -> None:
        for svc in services:
            spec = svc.get("spec") or {}
            ip = spec.get("clusterIP")
            if ip and ip != "None":
                self.ips.used.add(ip)
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    self.ports.used.add(int(p["nodePort"]))

    def _fail(self, svc: Obj, field: str, value: Any, e: AllocationError) -> ApiStatusError:
        return invalid("Service", svc["metadata"]["name"], "", [FieldError(field, "FieldValueInvalid", value, str(e))])

    def allocate(self, svc: Obj, old: Obj | None = None) -> list[tuple[str, Any]]:
        """Fill clusterIP/nodePorts in svc (keeping old's); return what was newly taken for rollback."""
        spec = svc["spec"]
        ospec = (old or {}).get("spec") or {}
        taken: list[tuple[str, Any]] = []
        try:
            if _needs_ip(spec):
                if old is not None and _needs_ip(ospec) and ospec.get("clusterIP"):
                    if not spec.get("clusterIP"):
                        spec["clusterIP"] = ospec["clusterIP"]
                    elif spec["clusterIP"] != ospec["clusterIP"]:
                        raise invalid("Service", svc["metadata"]["name"], "", [FieldError(
                            "spec.clusterIP", "FieldValueInvalid", spec["clusterIP"], "field is immutable")])
                else:
                    try:
                        spec["clusterIP"] = self.ips.allocate(spec.get("clusterIP") or None)
                    except AllocationError as e:
                        raise self._fail(svc, "spec.clusterIPs", [spec.get("clusterIP")], e) from None
                    taken.append(("ip", spec["clusterIP"]))
                spec["clusterIPs"] = [spec["clusterIP"]]
            elif spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                         for p in ospec.get("ports") or [] if p.get("nodePort")}
            old_set = set(old_ports.values())
            for i, p in enumerate(spec.get("ports") or []):
                if not _needs_node_ports(spec):
                    p.pop("nodePort", None)
                    continue
                want = p.get("nodePort")
                if not want:
                    want = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                if want and want in old_set and not any(t == ("port", want) for t in taken):
                    p["nodePort"] = want  # kept from the old object
                    old_set.discard(want)
                    continue
                try:
                    p["nodePort"] = self.ports.allocate(int(want) if want else None)
                except (AllocationError, ValueError) as e:
                    raise self._fail(svc, f"spec.ports[{i}].nodePort", want, AllocationError(str(e))) from None
                taken.append(("port", p["nodePort"]))
        except ApiStatusError:
            self.rollback(taken)
            raise
        return taken

    def rollback(self, taken: list[tuple[str, Any]]) -> None:
        for what, value in taken:
            (self.ips.release if what == "ip" else self.ports.release)(value)

    def release_dropped(self, old: Obj, new: Obj) -> None:
        """After an update: free what old held and new no longer does."""
        ospec, nspec = old.get("spec") or {}, new.get("spec") or {}
        if ospec.get("clusterIP") not in (None, "None") and nspec.get("clusterIP") != ospec.get("clusterIP"):
            self.ips.release(ospec.get("clusterIP"))
        keep = {p.get("nodePort") for p in nspec.get("ports") or []}
        for p in ospec.get("ports") or []:
            if p.get("nodePort") and p["nodePort"] not in keep:
                self.ports.release(p["nodePort"])

    def release(self, svc: Obj) -> None:
        spec = svc.get("spec") or {}
        if spec.get("clusterIP") not in (None, "None"):
            self.ips.release(spec["clusterIP"])
        for p in spec.get("ports") or []:
            self.ports.release(p.get("nodePort"))
