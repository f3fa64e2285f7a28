"""What the real apiserver creates for itself: system namespaces and the `kubernetes` Service."""

from __future__ import annotations

from ..config import ClusterConfig
from .registry import Registry
from .resources import BY_KIND, NAMESPACES
from .status import ApiStatusError

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def ensure_system_objects(registry: Registry, cluster: ClusterConfig) -> None:
    """Idempotent: creates only what is missing (safe on every start)."""
    for ns in SYSTEM_NAMESPACES:
        if registry.store.get(NAMESPACES.key(None, ns)) is None:
            await registry.create(NAMESPACES, None, {"metadata": {"name": ns}})
    svc, ep = BY_KIND["Service"], BY_KIND["Endpoints"]
    labels = {"component": "apiserver", "provider": "kubernetes"}
    try:
        if registry.store.get(svc.key("default", "kubernetes")) is None:
            await registry.create(svc, "default", {"metadata": {"name": "kubernetes", "labels": labels}, "spec": {
                "clusterIP": cluster.kubernetes_service_ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": cluster.api_port}]}})
        if registry.store.get(ep.key("default", "kubernetes")) is None:
            await registry.create(ep, "default", {"metadata": {"name": "kubernetes", "labels": labels}, "subsets": [{
                "addresses": [{"ip": cluster.api_host}],
                "ports": [{"name": "https", "port": cluster.api_port, "protocol": "TCP"}]}]})
    except ApiStatusError:
        pass  # someone occupies the address or the object; the cluster still serves
