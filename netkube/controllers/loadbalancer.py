"""LoadBalancer IPAM (MetalLB's controller): give each LoadBalancer Service an address from the pool."""

from __future__ import annotations

import ipaddress
import logging

from netkube.client import SERVICES, ApiError, Obj
from netkube.config import ClusterConfig
from netkube.controllers.base import Informers
from netkube.controllers.events import EventRecorder
from netkube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)


def svc_key(svc: Obj) -> str:
    md = svc["metadata"]
    return f"{md.get('namespace', 'default')}/{md['name']}"


def _ingress(svc: Obj) -> list[str]:
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]


def _ours(svc: Obj) -> bool:
    # A Service naming another implementation in spec.loadBalancerClass is left to it, as upstream.
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


class PoolExhausted(RuntimeError):
    pass


def allocate(services: list[Obj], pool: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """Desired ingress per Service key (only where it must change; None clears it) and errors.

    Existing assignments are kept first (a restart or a new Service never moves an address), then
    Services without one get spec.loadBalancerIP if free, else the lowest free pool address,
    oldest Service first."""
    pool_set = set(pool)
    order = sorted(services, key=lambda s: (s["metadata"].get("creationTimestamp", ""), svc_key(s)))
    taken: dict[str, str] = {}  # ip -> service key
    keep: dict[str, str] = {}
    for svc in order:
        cur = _ingress(svc)
        if _ours(svc) and len(cur) == 1 and cur[0] in pool_set and cur[0] not in taken:
            taken[cur[0]] = svc_key(svc)
            keep[svc_key(svc)] = cur[0]
    changes: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for svc in order:
        key, cur = svc_key(svc), _ingress(svc)
        if not _ours(svc):
            if cur and set(cur) <= pool_set and (svc.get("spec") or {}).get("type") != "LoadBalancer":
                changes[key] = None  # no longer a LoadBalancer: release its address
            continue
        if key in keep:
            continue
        want = (svc.get("spec") or {}).get("loadBalancerIP") or ""
        if want:
            if want not in pool_set:
                errors[key] = f"spec.loadBalancerIP {want} is not in the pool {pool[0]}-{pool[-1]}"
                continue
            if want in taken:
                errors[key] = f"spec.loadBalancerIP {want} is already used by {taken[want]}"
                continue
            ip = want
        else:
            free = [ip for ip in pool if ip not in taken]
            if not free:
                errors[key] = (f"no available IPs in the pool {pool[0]}-{pool[-1]}; delete a LoadBalancer "
                               f"Service or recreate the cluster with a larger --lb-pool")
                continue
            ip = min(free, key=lambda a: int(ipaddress.IPv4Address(a)))
        taken[ip] = key
        if cur != [ip]:
            changes[key] = ip
    return changes, errors


class LoadBalancerController:
    def __init__(self, client: object, informers: Informers, cluster: ClusterConfig) -> None:
        self.client = client
        self.inf = informers
        self.pool = cluster.lb_pool_ips
        self.queue = WorkQueue("loadbalancer", max_backoff=30.0)
        self.recorder = EventRecorder(client, "metallb-controller")  # type: ignore[arg-type]
        self._reported: dict[str, str] = {}

    def register(self) -> None:
        self.inf.services.add_handler(lambda t, s, o: self.queue.add("all"))

    async def run(self) -> None:
        await self.queue.run(self.sync, workers=1)  # one worker: allocations must not race each other

    async def sync(self, _key: str) -> None:
        services = self.inf.services.items()
        changes, errors = allocate(services, self.pool)
        by_key = {svc_key(s): s for s in services}
        for key, ip in changes.items():
            ns, _, name = key.partition("/")
            lb = {"ingress": [{"ip": ip, "ipMode": "VIP"}]} if ip else {"ingress": None}
            try:
                await self.client.patch(SERVICES, name, {"status": {"loadBalancer": lb}},  # type: ignore[attr-defined]
                                        namespace=ns, sub="status")
            except ApiError as e:
                if e.code == 404:
                    continue
                raise
            if ip:
                await self.recorder.normal(by_key[key], "IPAllocated", f"Assigned IP [\"{ip}\"]")
                self._reported.pop(key, None)
        for key, msg in errors.items():
            if self._reported.get(key) != msg:  # one event per problem, not one per resync
                self._reported[key] = msg
                log.warning("loadbalancer %s: %s", key, msg)
                await self.recorder.warning(by_key[key], "AllocationFailed", f"Failed to allocate IP for \"{key}\": {msg}")
