"""Feed the index from the apiserver: informers on Services and EndpointSlices."""

from __future__ import annotations

import asyncio
import logging

from netkube.client import ENDPOINTSLICES, SERVICES, ApiClient, Informer, Obj
from netkube.dns.index import Index
from netkube.dns.model import trim_service, trim_slice

log = logging.getLogger(__name__)


class ClusterWatcher:
    """Keeps `index` in step with the cluster; marks it synced once every first list is in."""

    def __init__(self, client: ApiClient, index: Index) -> None:
        self.index = index
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES)
        self.services.add_handler(self._on_service)
        self.slices.add_handler(self._on_slice)

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

    async def run(self) -> None:
        tasks = [asyncio.create_task(i.run()) for i in (self.services, self.slices)]
        try:
            synced = asyncio.gather(self.services.synced.wait(), self.slices.synced.wait())
            # An informer task only ends by crashing; don't wait for a sync that can't come.
            await asyncio.wait([synced, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if synced.done():
                self.index.mark_synced()
                log.info("synced: %d services, %d endpoint slices",
                         len(self.index.services), len(self.index.slices))
            else:
                synced.cancel()
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
