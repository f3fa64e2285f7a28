"""Record core/v1 Events for objects, coalescing repeats by bumping count (as client-go does)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from netkube.client import EVENTS, ApiError, Obj, Resource

log = logging.getLogger(__name__)


class EventClient(Protocol):
    async def create(self, res: Resource, obj: Obj, namespace: str | None = None) -> Obj: ...
    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None,
                    sub: str | None = None, patch_type: str = ...) -> Obj: ...


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def involved_object(obj: Obj) -> Obj:
    md = obj.get("metadata", {})
    ref = {"kind": obj.get("kind", ""), "namespace": md.get("namespace"), "name": md.get("name"),
           "uid": md.get("uid"), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": md.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """One per component (source.component, e.g. "deployment-controller")."""

    def __init__(self, client: EventClient, component: str, host: str | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host
        # (uid/kind/name, type, reason, message) -> (namespace, event name, count)
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int]] = {}

    async def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Never raises: a lost event must not fail the caller's sync."""
        try:
            await self._record(obj, type_, reason, message)
        except Exception as e:  # noqa: BLE001 - events are best effort, as in client-go
            log.warning("%s: could not record event %s for %s: %s", self.component, reason,
                        obj.get("metadata", {}).get("name"), e)

    async def normal(self, obj: Obj, reason: str, message: str) -> None:
        await self.event(obj, "Normal", reason, message)

    async def warning(self, obj: Obj, reason: str, message: str) -> None:
        await self.event(obj, "Warning", reason, message)

    async def _record(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        md = obj.get("metadata", {})
        # Cluster-scoped objects (nodes) get their events in "default", as upstream does.
        namespace = md.get("namespace") or "default"
        key = (md.get("uid") or f"{obj.get('kind')}/{md.get('name')}", type_, reason, message)
        now = _now()
        seen = self._seen.get(key)
        if seen is not None:
            ns, name, count = seen
            try:
                await self.client.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": now}, ns)
                self._seen[key] = (ns, name, count + 1)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        name = f"{md.get('name')}.{time.time_ns():x}"
        source = {"component": self.component}
        if self.host:
            source["host"] = self.host
        ev = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved_object(obj), "reason": reason, "message": message,
            "source": source, "type": type_, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "eventTime": None,
            "reportingComponent": self.component, "reportingInstance": self.host or "",
        }
        await self.client.create(EVENTS, ev, namespace)
        if len(self._seen) > 4096:  # bound memory as client-go's LRU does
            self._seen.clear()
        self._seen[key] = (namespace, name, 1)
