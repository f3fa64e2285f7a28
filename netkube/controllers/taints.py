"""Node condition taints and NoExecute eviction timing (upstream node lifecycle + taint eviction)."""

from __future__ import annotations

from netkube.client import Obj
from netkube.controllers.base import parse_time
from netkube.scheduler.filters import tolerates

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
CONDITION_KEYS = (NOT_READY_TAINT, UNREACHABLE_TAINT)


def condition_taints(ready: str | None, now: str) -> list[Obj]:
    """The NoSchedule (TaintNodesByCondition) and NoExecute (taint-based eviction) taints a node's
    Ready condition calls for: not-ready for False, unreachable for Unknown, none for True."""
    if ready == "True":
        return []
    key = NOT_READY_TAINT if ready == "False" else UNREACHABLE_TAINT
    return [{"key": key, "effect": "NoSchedule"}, {"key": key, "effect": "NoExecute", "timeAdded": now}]


def merge_taints(current: list[Obj], wanted: list[Obj]) -> list[Obj]:
    """current with the condition taints replaced by wanted; an unchanged taint keeps its timeAdded."""
    same = {(t["key"], t["effect"]) for t in wanted}
    keep = [t for t in current if t.get("key") not in CONDITION_KEYS or (t.get("key"), t.get("effect")) in same]
    have = {(t.get("key"), t.get("effect")) for t in keep}
    return keep + [t for t in wanted if (t["key"], t["effect"]) not in have]


def eviction_time(pod: Obj, taints: list[Obj]) -> float | None:
    """When a pod on a node with these taints must go: None = never, else a Unix time. An untolerated
    NoExecute taint evicts at once; tolerated ones after the smallest tolerationSeconds (from timeAdded)."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    due: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        matching = [t for t in tolerations if tolerates(t, taint)]
        added = parse_time(taint.get("timeAdded")) or 0.0
        if not matching:
            return added
        secs = [float(t["tolerationSeconds"]) for t in matching if t.get("tolerationSeconds") is not None]
        if secs:
            at = added + max(0.0, min(secs))
            due = at if due is None else min(due, at)
    return due
