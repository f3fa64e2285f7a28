"""Pure rendering of a Service's Endpoints subsets and EndpointSlice content from its pods."""

from __future__ import annotations

from typing import Any

from netkube.client import Obj
from netkube.controllers.base import pod_is_ready

Ports = tuple[tuple[str, int, str], ...]  # (name, port, protocol), in service port order


def resolve_target_port(service_port: Obj, pod: Obj) -> int | None:
    """targetPort as a number, or a name looked up in the pod's containerPorts (same protocol)."""
    target: Any = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = service_port.get("protocol", "TCP")
    for c in pod.get("spec", {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == target and cp.get("protocol", "TCP") == proto:
                return int(cp["containerPort"])
    return None  # upstream drops a port the pod does not expose under that name


def pod_ports(service: Obj, pod: Obj) -> Ports:
    out = []
    for sp in service.get("spec", {}).get("ports") or []:
        port = resolve_target_port(sp, pod)
        if port is not None:
            out.append((sp.get("name", ""), port, sp.get("protocol", "TCP")))
    return tuple(out)


def _ref(pod: Obj) -> Obj:
    md = pod["metadata"]
    return {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"]}


def candidate_pods(service: Obj, pods: list[Obj]) -> list[Obj]:
    """Pods that belong in the Service's endpoints at all: with an IP and not terminal."""
    return [p for p in pods if p.get("status", {}).get("podIP")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def render_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    """Endpoints.subsets: ready pods in addresses, the rest in notReadyAddresses, terminating left out."""
    publish = service.get("spec", {}).get("publishNotReadyAddresses", False)
    groups: dict[Ports, dict[str, list[Obj]]] = {}
    for pod in candidate_pods(service, pods):
        if pod["metadata"].get("deletionTimestamp") and not publish:
            continue  # a terminating pod leaves the Endpoints at once
        ports = pod_ports(service, pod)
        if service.get("spec", {}).get("ports") and not ports:
            continue
        addr = {"ip": pod["status"]["podIP"], "targetRef": _ref(pod)}
        if _hostname(service, pod):
            addr["hostname"] = _hostname(service, pod)
        if pod.get("spec", {}).get("nodeName"):
            addr["nodeName"] = pod["spec"]["nodeName"]
        bucket = "addresses" if (publish or pod_is_ready(pod)) else "notReadyAddresses"
        groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})[bucket].append(addr)
    subsets = []
    for ports, buckets in sorted(groups.items()):
        subset: Obj = {}
        for bucket in ("addresses", "notReadyAddresses"):
            if buckets[bucket]:
                subset[bucket] = sorted(buckets[bucket], key=lambda a: tuple(int(x) for x in a["ip"].split(".")))
        if ports:
            subset["ports"] = [_port(n, p, proto) for n, p, proto in ports]
        subsets.append(subset)
    return subsets


def _port(name: str, port: int, proto: str) -> Obj:
    out: Obj = {"port": port, "protocol": proto}
    if name:
        out["name"] = name
    return out


def render_slices(service: Obj, pods: list[Obj]) -> list[tuple[list[Obj], list[Obj]]]:
    """EndpointSlice (ports, endpoints) groups: one group per distinct resolved port set."""
    publish = service.get("spec", {}).get("publishNotReadyAddresses", False)
    groups: dict[Ports, list[Obj]] = {}
    for pod in candidate_pods(service, pods):
        ports = pod_ports(service, pod)
        if service.get("spec", {}).get("ports") and not ports:
            continue
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        serving = pod_is_ready(pod)
        ep: Obj = {
            "addresses": [pod["status"]["podIP"]],
            # ready is false for a terminating pod even if it still serves (upstream semantics).
            "conditions": {"ready": (serving or publish) and not terminating, "serving": serving or publish,
                           "terminating": terminating},
            "targetRef": _ref(pod),
        }
        if pod.get("spec", {}).get("nodeName"):
            ep["nodeName"] = pod["spec"]["nodeName"]
        if _hostname(service, pod):
            ep["hostname"] = _hostname(service, pod)
        groups.setdefault(ports, []).append(ep)
    if not groups:
        # An empty slice still carries the service's ports, so consumers see "no endpoints".
        sp = service.get("spec", {}).get("ports") or []
        return [([], [])] if not sp else [([_slice_port(p.get("name", ""), None, p.get("protocol", "TCP"))
                                             for p in sp], [])]
    out = []
    for ports, eps in sorted(groups.items()):
        eps.sort(key=lambda e: tuple(int(x) for x in e["addresses"][0].split(".")))
        out.append(([_slice_port(n, p, proto) for n, p, proto in ports], eps))
    return out


def _slice_port(name: str, port: int | None, proto: str) -> Obj:
    out: Obj = {"name": name, "protocol": proto}
    if port is not None:
        out["port"] = port
    return out


def _hostname(service: Obj, pod: Obj) -> str | None:
    """A pod's hostname is published only when its subdomain names this Service (StatefulSet DNS)."""
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        return str(spec["hostname"])
    return None
