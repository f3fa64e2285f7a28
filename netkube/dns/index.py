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
        self.namespaces: set[str] = set()
        self.pods: dict[str, set[str]] = {}  # pod IP -> namespaces of pods with that IP (pods verified)
        self._pod_ips: dict[tuple[str, str], tuple[str, ...]] = {}
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

    def set_namespace(self, name: str) -> None:
        if name not in self.namespaces:
            self.namespaces.add(name)
            self._changed()

    def delete_namespace(self, name: str) -> None:
        if name in self.namespaces:
            self.namespaces.discard(name)
            self._changed()

    def set_pod(self, namespace: str, name: str, ips: tuple[str, ...]) -> None:
        key = (namespace, name)
        if self._pod_ips.get(key, ()) == ips:
            return
        self.delete_pod(namespace, name, notify=False)
        if ips:
            self._pod_ips[key] = ips
            for ip in ips:
                self.pods.setdefault(ip, set()).add(namespace)
        self._changed()

    def delete_pod(self, namespace: str, name: str, notify: bool = True) -> None:
        old = self._pod_ips.pop((namespace, name), ())
        for ip in old:
            others = {ns for (ns, n), ips in self._pod_ips.items() if ip in ips}
            if others:
                self.pods[ip] = others
            else:
                self.pods.pop(ip, None)
        if old and notify:
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
        """The Namespace object exists (CoreDNS >= 1.9 watches Namespaces to decide NXDOMAIN)."""
        return namespace in self.namespaces

    def pod_in(self, ip: str, namespace: str) -> bool:
        return namespace in self.pods.get(ip, ())

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
        """Owner labels (relative to the zone) a PTR for this IP points at, as CoreDNS picks them.

        A ClusterIP wins (the first service that has it); otherwise every ready endpoint of any
        service with that address, named by hostname or dashed address.
        """
        if self._ptr is None:
            table: dict[str, list[tuple[str, ...]]] = {}
            for svc in sorted(self.services.values(), key=lambda s: (s.namespace, s.name)):
                for cip in svc.cluster_ips:
                    table.setdefault(cip, [(svc.name, svc.namespace, "svc")])
            eps: dict[str, list[tuple[str, ...]]] = {}
            for (ns, name) in sorted(self._slices_by_svc):
                for ep, _ in self.endpoints(ns, name):
                    owner = (ep.hostname or dashed(ep.ip), name, ns, "svc")
                    if owner not in eps.setdefault(ep.ip, []):
                        eps[ep.ip].append(owner)
            for addr, owners in eps.items():
                table.setdefault(addr, owners)
            self._ptr = table
        return self._ptr.get(ip, [])

    def service_ips_with_endpoint(self, ips: set[str]) -> list[tuple[str, str]]:
        """(owner name labels joined, address) of services whose endpoints include one of `ips`.

        CoreDNS's nsAddrs: the DNS server finds the Services it backs (kube-dns) for NS answers.
        """
        out: list[tuple[str, str]] = []
        for (ns, name) in sorted(self._slices_by_svc):
            svc = self.services.get((ns, name))
            if svc is None:
                continue
            for ep, _ in self.endpoints(ns, name):
                if ep.ip not in ips:
                    continue
                if svc.headless:
                    out.append((f"{ep.hostname or dashed(ep.ip)}.{name}.{ns}.svc", ep.ip))
                else:
                    out += [(f"{name}.{ns}.svc", cip) for cip in svc.cluster_ips]
        return list(dict.fromkeys(out))
