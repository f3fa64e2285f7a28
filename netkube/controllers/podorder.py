"""Which pods a ReplicaSet deletes first when scaling down (upstream controller.ActivePods order)."""

from __future__ import annotations

from netkube.client import Obj
from netkube.controllers.base import parse_time, pod_is_ready

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _ready_since(pod: Obj) -> float:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime")) or 0.0
    return 0.0


def _restarts(pod: Obj) -> int:
    return max((cs.get("restartCount", 0) for cs in pod.get("status", {}).get("containerStatuses") or []),
               default=0)


def deletion_key(pod: Obj) -> tuple[int, int, int, float, int, float, str]:
    """Sort ascending = delete first: unscheduled, pending, not ready, ready most recently,
    most restarts, newest; the name only makes the order total."""
    ready = pod_is_ready(pod)
    return (
        1 if pod.get("spec", {}).get("nodeName") else 0,
        _PHASE_RANK.get(pod.get("status", {}).get("phase", "Pending"), 0),
        1 if ready else 0,
        -_ready_since(pod) if ready else 0.0,
        -_restarts(pod),
        -(parse_time(pod["metadata"].get("creationTimestamp")) or 0.0),
        pod["metadata"]["name"],
    )


def pods_to_delete(pods: list[Obj], count: int) -> list[Obj]:
    return sorted(pods, key=deletion_key)[:count]
