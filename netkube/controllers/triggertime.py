"""When did the change behind an Endpoints/EndpointSlice write happen (upstream's trigger time tracker).

The controller stamps each write with endpoints.kubernetes.io/last-change-trigger-time so kube-proxy
can report network programming latency. Per Service it remembers the trigger times it has already
reported: a pod's Ready condition lastTransitionTime and the Service's creationTimestamp. The stamp
is the earliest of the times not reported yet, or the Service's creation on its first sync; a sync
with no new trigger (a pod deleted, a resync) gets none."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from netkube.client import Obj
from netkube.controllers.base import parse_time

TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


def _parse(raw: str | None) -> datetime | None:
    t = parse_time(raw)
    return None if t is None else datetime.fromtimestamp(t, UTC)


def pod_trigger_time(pod: Obj) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return _parse(cond.get("lastTransitionTime"))
    return None


@dataclass
class _State:
    service: datetime | None = None
    pods: dict[str, datetime] = field(default_factory=dict)


class TriggerTimeTracker:
    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    def compute(self, svc: Obj, pods: list[Obj]) -> datetime | None:
        key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
        known = key in self._states
        old = self._states.get(key, _State())
        new = _State(service=_parse(svc["metadata"].get("creationTimestamp")))
        earliest: datetime | None = None
        for pod in pods:
            t = pod_trigger_time(pod)
            if t is None:
                continue
            name = pod["metadata"]["name"]
            new.pods[name] = t
            seen = old.pods.get(name)
            if seen is None or t > seen:
                earliest = t if earliest is None else min(earliest, t)
        if new.service is not None and (old.service is None or new.service > old.service):
            earliest = new.service if earliest is None else min(earliest, new.service)
        self._states[key] = new
        if not known:
            return new.service  # a Service seen for the first time: its creation triggered this
        return earliest

    def forget(self, ns: str, name: str) -> None:
        self._states.pop(f"{ns}/{name}", None)


def rfc3339nano(when: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: the fraction without trailing zeros, none when whole."""
    base = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{when.microsecond:06d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def stamp(meta: Obj, when: datetime | None) -> None:
    """Set (or drop) the annotation on an object's metadata about to be written."""
    annotations = dict(meta.get("annotations") or {})
    if when is None:
        annotations.pop(TRIGGER_TIME, None)
    else:
        annotations[TRIGGER_TIME] = rfc3339nano(when)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
