"""Bootstrap objects every cluster has: system namespaces and the `kubernetes` Service + endpoints."""

from __future__ import annotations

import asyncio
import logging

from netkube.client import ENDPOINTS, ENDPOINTSLICES, NAMESPACES, SERVICES, ApiError, Obj, Resource
from netkube.config import ClusterConfig
from netkube.controllers.base import Informers

log = logging.getLogger(__name__)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
RECHECK_PERIOD = 10.0


def desired_objects(cluster: ClusterConfig) -> list[tuple[Resource, Obj]]:
    ip = cluster.kubernetes_service_ip
    api_port = cluster.api_port
    api_ip = cluster.api_host
    out: list[tuple[Resource, Obj]] = [
        (NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                      "spec": {"finalizers": ["kubernetes"]}})
        for ns in SYSTEM_NAMESPACES
    ]
    out.append((SERVICES, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None",
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]},
    }))
    out.append((ENDPOINTS, {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": api_ip}],
                     "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}],
    }))
    out.append((ENDPOINTSLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [api_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
    }))
    return out


class BootstrapController:
    def __init__(self, client: object, informers: Informers, cluster: ClusterConfig) -> None:
        self.client = client
        self.inf = informers
        self.cluster = cluster
        self._wake = asyncio.Event()

    def register(self) -> None:
        for inf in (self.inf.namespaces, self.inf.services, self.inf.endpoints, self.inf.endpointslices):
            inf.add_handler(lambda t, o, old: self._wake.set() if t == "DELETED" else None)

    async def run(self) -> None:
        while True:
            try:
                await self.ensure()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bootstrap: ensuring system objects failed; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), RECHECK_PERIOD)
            except TimeoutError:
                pass

    async def ensure(self) -> None:
        """Create what is missing; the kubernetes endpoints are also put back if changed."""
        for res, obj in desired_objects(self.cluster):
            md = obj["metadata"]
            try:
                cur = await self.client.get(res, md["name"], md.get("namespace"))  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code != 404:
                    raise
                try:
                    await self.client.create(res, obj, md.get("namespace"))  # type: ignore[attr-defined]
                except ApiError as e2:
                    if e2.code != 409:
                        raise
                continue
            if res in (ENDPOINTS, ENDPOINTSLICES):
                fields = ("subsets",) if res is ENDPOINTS else ("endpoints", "ports")
                if any(cur.get(f) != obj.get(f) for f in fields):
                    new = {**cur, **{f: obj[f] for f in fields}}
                    await self.client.update(res, new)  # type: ignore[attr-defined]
