"""One change tracker for every proxy mode: handlers record changes, the runner takes snapshots."""

from __future__ import annotations

import threading

from proxy_modes.model import (
    Endpoint,
    Obj,
    ProxyState,
    ServicePort,
    ServicePortName,
    service_ports,
    slice_endpoints,
)


def _key(obj: Obj) -> str:
    md = obj.get("metadata", {})
    return f"{md.get('namespace', 'default')}/{md['name']}"


class ChangeTracker:
    """Holds the current Services and EndpointSlices and which services changed since the last ack."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self._services: dict[str, dict[ServicePortName, ServicePort]] = {}
        self._slices: dict[str, dict[ServicePortName, list[Endpoint]]] = {}
        # service key -> change count; ack() only clears keys not changed again since the
        # snapshot it acknowledges, so a change that lands mid-sync is never lost.
        self._changed: dict[str, int] = {}
        self._snapshot_counts: dict[str, int] = {}
        self._applied: dict[ServicePortName, set[str]] = {}  # UDP endpoint IPs at the last ack
        self._lock = threading.Lock()  # snapshots may be taken from a worker thread

    # --- handlers (Informer signature: event type, object, old object) ----------------------
    def on_service(self, etype: str, obj: Obj, old: Obj | None = None) -> None:
        key = _key(obj)
        with self._lock:
            ports = {} if etype == "DELETED" else service_ports(obj)
            if self._services.get(key, {}) != ports:
                self._changed[key] = self._changed.get(key, 0) + 1
            if ports:
                self._services[key] = ports
            else:
                self._services.pop(key, None)

    def on_endpoint_slice(self, etype: str, obj: Obj, old: Obj | None = None) -> None:
        key = _key(obj)
        with self._lock:
            eps = {} if etype == "DELETED" else slice_endpoints(obj, self.node_name)
            prev = self._slices.get(key, {})
            if prev != eps:
                for svc in {spn.service for spn in set(prev) | set(eps)}:
                    self._changed[svc] = self._changed.get(svc, 0) + 1
            if eps:
                self._slices[key] = eps
            else:
                self._slices.pop(key, None)

    # --- snapshots ------------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        return bool(self._changed)

    def snapshot(self) -> ProxyState:
        with self._lock:
            state = ProxyState(changed=set(self._changed))
            self._snapshot_counts = dict(self._changed)
            for ports in self._services.values():
                state.services.update(ports)
            merged: dict[ServicePortName, dict[str, Endpoint]] = {}
            for eps in self._slices.values():
                for spn, lst in eps.items():
                    bucket = merged.setdefault(spn, {})
                    for e in lst:
                        bucket.setdefault(str(e), e)  # the same endpoint in two slices counts once
            for spn in state.services:
                # Upstream orders endpoints by their "ip:port" string.
                state.endpoints[spn] = sorted(merged.get(spn, {}).values(), key=str)
            self._stale_udp(state)
            return state

    def _stale_udp(self, state: ProxyState) -> None:
        for spn, sp in state.services.items():
            if sp.name.protocol != "UDP":
                continue
            now = {e.ip for e in state.endpoints[spn] if e.ready or e.serving}
            before = self._applied.get(spn, set())
            if now and not before:
                state.stale_udp_services.append(sp)
            state.stale_udp_endpoints.extend((sp, ip) for ip in sorted(before - now))

    def ack(self, state: ProxyState) -> None:
        """The backend applied `state`: forget its changes, remember its UDP endpoints."""
        with self._lock:
            for key in state.changed:
                if key in self._changed and self._changed[key] == self._snapshot_counts.get(key):
                    del self._changed[key]
            self._applied = {
                spn: {e.ip for e in eps if e.ready or e.serving}
                for spn, eps in state.endpoints.items()
                if spn.protocol == "UDP"
            }
