"""Shared informers for all controllers and the helpers they use to read them."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from netkube import client as api
from netkube.client import Informer, Obj


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ns_key(obj: Obj) -> str:
    return Informer.key(obj)


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def owner_reference(owner: Obj) -> Obj:
    md = owner["metadata"]
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""), "name": md["name"],
            "uid": md["uid"], "controller": True, "blockOwnerDeletion": True}


def clone(obj: Any) -> Any:
    return copy.deepcopy(obj)


def pod_is_ready(pod: Obj) -> bool:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_is_active(pod: Obj) -> bool:
    """Upstream FilterActivePods: not terminal and not being deleted."""
    return (pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and not pod["metadata"].get("deletionTimestamp"))


@dataclass
class Informers:
    """One informer per resource, shared by every controller in the process."""

    client: Any
    pods: Informer = field(init=False)
    nodes: Informer = field(init=False)
    services: Informer = field(init=False)
    endpoints: Informer = field(init=False)
    endpointslices: Informer = field(init=False)
    deployments: Informer = field(init=False)
    replicasets: Informer = field(init=False)
    namespaces: Informer = field(init=False)
    leases: Informer = field(init=False)
    daemonsets: Informer = field(init=False)
    statefulsets: Informer = field(init=False)
    controllerrevisions: Informer = field(init=False)
    jobs: Informer = field(init=False)
    cronjobs: Informer = field(init=False)

    def __post_init__(self) -> None:
        from netkube.controllers import kinds

        c = self.client
        self.pods = Informer(c, api.PODS)
        self.nodes = Informer(c, api.NODES)
        self.services = Informer(c, api.SERVICES)
        self.endpoints = Informer(c, api.ENDPOINTS)
        self.endpointslices = Informer(c, api.ENDPOINTSLICES)
        self.deployments = Informer(c, api.DEPLOYMENTS)
        self.replicasets = Informer(c, api.REPLICASETS)
        self.namespaces = Informer(c, api.NAMESPACES)
        self.leases = Informer(c, api.LEASES, namespace="kube-node-lease")
        self.daemonsets = Informer(c, kinds.DAEMONSETS)
        self.statefulsets = Informer(c, kinds.STATEFULSETS)
        self.controllerrevisions = Informer(c, kinds.CONTROLLERREVISIONS)
        self.jobs = Informer(c, kinds.JOBS)
        self.cronjobs = Informer(c, kinds.CRONJOBS)

    def all(self) -> list[Informer]:
        return [self.pods, self.nodes, self.services, self.endpoints, self.endpointslices,
                self.deployments, self.replicasets, self.namespaces, self.leases, self.daemonsets,
                self.statefulsets, self.controllerrevisions, self.jobs, self.cronjobs]

    async def wait_synced(self) -> None:
        # Leases are optional (only a heartbeat hint): an apiserver without them must not block startup.
        await asyncio.gather(*(i.synced.wait() for i in self.all() if i is not self.leases))
