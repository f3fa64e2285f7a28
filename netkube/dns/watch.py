"""Feed the index from the apiserver: informers on Namespaces, Services, EndpointSlices (and Pods)."""

from __future__ import annotations

import asyncio
import logging

from netkube.client import ENDPOINTSLICES, NAMESPACES, PODS, SERVICES, ApiClient, Informer, Obj
from netkube.dns.index import Index
from netkube.dns.model import trim_service, trim_slice

log = logging.getLogger(__name__)


def pod_ips(obj: Obj) -> tuple[str, ...]:
    """Addresses CoreDNS indexes a pod under (status.podIP(s)); none while it has no sandbox yet."""
    status = obj.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    if (obj.get("spec") or {}).get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return ()
    return tuple(ip for ip in ips if ip)


class ClusterWatcher:
    """Keeps `index` in step with the cluster; marks it synced once every first list is in.

    Pods are only watched with `pods verified`, as CoreDNS does: insecure mode never looks at them.
    """

    def __init__(self, client: ApiClient, index: Index, pods: bool = False) -> None:
        self.index = index
        self.client = client
        self.namespaces = Informer(client, NAMESPACES)
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES)
        self.pods: Informer | None = None
        self.namespaces.add_handler(self._on_namespace)
        self.services.add_handler(self._on_service)
        self.slices.add_handler(self._on_slice)
        self._pod_task: asyncio.Task[None] | None = None
        self._want_pods = pods

    def _on_namespace(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = obj["metadata"]["name"]
        if event == "DELETED":
            self.index.delete_namespace(name)
        else:
            self.index.set_namespace(name)

    def _on_service(self, event: str, obj: Obj, old: Obj | None) -> None:
        md = obj["metadata"]
        if event == "DELETED":
            self.index.delete_service(md.get("namespace", "default"), md["name"])
        else:
            self.index.set_service(trim_service(obj))

    def _on_slice(self, event: str, obj: Obj, old: Obj | None) -> None:
        md = obj["metadata"]
        trimmed = None if event == "DELETED" else trim_slice(obj)
        if trimmed is None:
            self.index.delete_slice(md.get("namespace", "default"), md["name"])
        else:
            self.index.set_slice(trimmed)

    def _on_pod(self, event: str, obj: Obj, old: Obj | None) -> None:
        md = obj["metadata"]
        ns = md.get("namespace", "default")
        if event == "DELETED":
            self.index.delete_pod(ns, md["name"])
        else:
            self.index.set_pod(ns, md["name"], pod_ips(obj))

    def watch_pods(self, on: bool) -> None:
        """Start or stop the Pod informer (the config can switch `pods verified` on a reload)."""
        self._want_pods = on
        if on and self._pod_task is None:
            self.pods = Informer(self.client, PODS)
            self.pods.add_handler(self._on_pod)
            self._pod_task = asyncio.create_task(self.pods.run())
        elif not on and self._pod_task is not None:
            self._pod_task.cancel()
            self._pod_task = None

    async def run(self) -> None:
        informers = (self.namespaces, self.services, self.slices)
        tasks = [asyncio.create_task(i.run()) for i in informers]
        if self._want_pods:
            self.watch_pods(True)
        try:
            synced = asyncio.gather(*(i.synced.wait() for i in informers))
            # An informer task only ends by crashing; don't wait for a sync that can't come.
            await asyncio.wait([synced, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if synced.done():
                self.index.mark_synced()
                log.info("synced: %d namespaces, %d services, %d endpoint slices", len(self.index.namespaces),
                         len(self.index.services), len(self.index.slices))
            else:
                synced.cancel()
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            if self._pod_task is not None:
                tasks.append(self._pod_task)
                self._pod_task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
