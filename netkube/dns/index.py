"""Indexes of services and endpoints by name and by IP, with a generation bumped on every change."""

from __future__ import annotations

import time
from collections.abc import Callable

from netkube.dns.model import Endpoint, Port, Service, Slice


def dashed(ip: str) -> str:
    """The endpoint/pod label CoreDNS derives from an address (10.244.1.5 -> 10-244-1-5)."""
    return ip.replace(".", "-").replace(":", "-")


class Index:
    """What the handler reads. Mutated only by the watcher; every mutation bumps `generation`."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], Slice] = {}
        self._slices_by_svc: dict[tuple[str, str], set[str]] = {}
        self._ns_count: dict[str, int] = {}
        self._ptr: dict[str, list[tuple[str, ...]]] | None = None
        self.synced = False
        self.generation = 0
        self.serial = int(time.time())  # SOA serial, like CoreDNS: the time of the last change
        self.listeners: list[Callable[[], None]] = []

    def _changed(self) -> None:
        self.generation += 1
        self.serial = int(time.time())
        self._ptr = None
        for cb in self.listeners:
            cb()

    def mark_synced(self) -> None:
        self.synced = True
        self._changed()

    # --- mutation -----------------------------------------------------------------------------
    def set_service(self, svc: Service) -> None:
        key = (svc.namespace, svc.name)
        if key not in self.services:
            self._ns_count[svc.namespace] = self._ns_count.get(svc.namespace, 0) + 1
        self.services[key] = svc
        self._changed()

    def delete_service(self, namespace: str, name: str) -> None:
        if self.services.pop((namespace, name), None) is not None:
            left = self._ns_count.get(namespace, 1) - 1
            if left:
                self._ns_count[namespace] = left
            else:
                self._ns_count.pop(namespace, None)
            self._changed()

    def set_slice(self, sl: Slice) -> None:
        key = (sl.namespace, sl.name)
        old = self.slices.get(key)
        if old is not None and old.service != sl.service:
            self._slices_by_svc.get((old.namespace, old.service), set()).discard(old.name)
        self.slices[key] = sl
        self._slices_by_svc.setdefault((sl.namespace, sl.service), set()).add(sl.name)
        self._changed()

    def delete_slice(self, namespace: str, name: str) -> None:
        old = self.slices.pop((namespace, name), None)
        if old is not None:
            names = self._slices_by_svc.get((namespace, old.service))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._slices_by_svc[(namespace, old.service)]
            self._changed()

    # --- queries ------------------------------------------------------------------------------
    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get((namespace, name))

    def has_namespace(self, namespace: str) -> bool:
        return namespace in self._ns_count

    def endpoints(self, namespace: str, name: str) -> list[tuple[Endpoint, tuple[Port, ...]]]:
        """Ready endpoints of a service, one per address, with the ports of their slice."""
        out: list[tuple[Endpoint, tuple[Port, ...]]] = []
        seen: set[str] = set()
        for slice_name in sorted(self._slices_by_svc.get((namespace, name), ())):
            sl = self.slices[(namespace, slice_name)]
            for ep in sl.endpoints:
                if ep.ready and ep.ip not in seen:
                    seen.add(ep.ip)
                    out.append((ep, sl.ports))
        return out

    def ptr(self, ip: str) -> list[tuple[str, ...]]:
        """Owner labels (relative to the zone) whose records point at this IP."""
        if self._ptr is None:
            table: dict[str, list[tuple[str, ...]]] = {}
            for svc in self.services.values():
                for cip in svc.cluster_ips:
                    table.setdefault(cip, []).append((svc.name, svc.namespace, "svc"))
                if svc.headless:
                    for ep, _ in self.endpoints(svc.namespace, svc.name):
                        label = ep.hostname or dashed(ep.ip)
                        table.setdefault(ep.ip, []).append((label, svc.name, svc.namespace, "svc"))
            self._ptr = table
        return self._ptr.get(ip, [])
