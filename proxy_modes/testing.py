"""Builders of Service and EndpointSlice dicts for tests of every proxy mode."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def service(ns: str, name: str, cluster_ip: str, ports: list[tuple[str, int, str]] | None = None,
            svc_type: str = "ClusterIP", node_ports: list[int] | None = None, **spec: Any) -> Obj:
    """ports: (name, port, protocol); node_ports pairs with ports; spec: extra spec fields."""
    plist: list[Obj] = []
    for i, (pname, port, proto) in enumerate(ports or [("p80", 80, "TCP")]):
        p: Obj = {"name": pname, "port": port, "protocol": proto, "targetPort": port}
        if node_ports:
            p["nodePort"] = node_ports[i]
        plist.append(p)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name, "resourceVersion": "1"},
        "spec": {"type": svc_type, "clusterIP": cluster_ip, "ports": plist, **spec},
    }


def endpoint_slice(ns: str, svc: str, ips: list[str], ports: list[tuple[str, int, str]] | None = None,
                   node: str | dict[str, str] = "", ready: dict[str, bool] | None = None,
                   suffix: str = "abc") -> Obj:
    """node: one node name for all, or ip → node name; ready: ip → ready (default True)."""
    eps: list[Obj] = []
    for ip in ips:
        e: Obj = {"addresses": [ip], "conditions": {"ready": (ready or {}).get(ip, True)}}
        n = node.get(ip, "") if isinstance(node, dict) else node
        if n:
            e["nodeName"] = n
        eps.append(e)
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"namespace": ns, "name": f"{svc}-{suffix}", "resourceVersion": "1",
                     "labels": {"kubernetes.io/service-name": svc}},
        "endpoints": eps,
        "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in (ports or [("p80", 80, "TCP")])],
    }
