"""Deployment status and its Available/Progressing conditions, with upstream reasons and texts."""

from __future__ import annotations

from netkube.client import Obj
from netkube.controllers.base import clone, now_rfc3339
from netkube.controllers.rollout import fenceposts, spec_replicas


def _status_sum(rss: list[Obj], field: str) -> int:
    return sum(int((rs.get("status") or {}).get(field, 0)) for rs in rss)


def set_condition(conds: list[Obj], ctype: str, status: str, reason: str, message: str) -> list[Obj]:
    """Replace one condition; keep lastTransitionTime when the status did not flip (as upstream)."""
    now = now_rfc3339()
    old = next((c for c in conds if c.get("type") == ctype), None)
    if old and old.get("status") == status and old.get("reason") == reason and old.get("message") == message:
        return conds
    new = {"type": ctype, "status": status, "lastUpdateTime": now,
           "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status else now,
           "reason": reason, "message": message}
    return [c for c in conds if c.get("type") != ctype] + [new] if old is None else \
        [new if c.get("type") == ctype else c for c in conds]


def deployment_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None, created: bool) -> Obj:
    desired = d["spec"].get("replicas", 1)
    status = clone(d.get("status") or {})
    available = _status_sum(all_rss, "availableReplicas")
    total_spec = sum(spec_replicas(rs) for rs in all_rss)
    status.update({
        "observedGeneration": d["metadata"].get("generation", 1),
        "replicas": _status_sum(all_rss, "replicas"),
        "updatedReplicas": int((new_rs or {}).get("status", {}).get("replicas", 0)) if new_rs else 0,
        "readyReplicas": _status_sum(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(total_spec - available, 0),
    })
    # Upstream omits zero counters (omitempty) except replicas-like fields kubectl reads; keep it tidy.
    for k in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas"):
        if status[k] == 0:
            status.pop(k)
    _, max_unavailable = fenceposts(d) if (d["spec"].get("strategy") or {}).get("type") != "Recreate" else (0, 0)
    conds = list(status.get("conditions") or [])
    if available >= desired - max_unavailable:
        conds = set_condition(conds, "Available", "True", "MinimumReplicasAvailable",
                              "Deployment has minimum availability.")
    else:
        conds = set_condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                              "Deployment does not have minimum availability.")
    if new_rs is not None:
        name = new_rs["metadata"]["name"]
        ns = new_rs.get("status") or {}
        complete = (int(ns.get("replicas", 0)) == desired and int(ns.get("availableReplicas", 0)) == desired
                    and status["replicas"] == desired and spec_replicas(new_rs) == desired)
        has_progressing = any(c.get("type") == "Progressing" for c in conds)
        if complete:
            conds = set_condition(conds, "Progressing", "True", "NewReplicaSetAvailable",
                                  f'ReplicaSet "{name}" has successfully progressed.')
        elif created:
            conds = set_condition(conds, "Progressing", "True", "NewReplicaSetCreated",
                                  f'Created new replica set "{name}"')
        elif not has_progressing:
            conds = set_condition(conds, "Progressing", "True", "FoundNewReplicaSet",
                                  f'Found new replica set "{name}"')
        elif _progressed(d.get("status") or {}, status):
            conds = set_condition(conds, "Progressing", "True", "ReplicaSetUpdated",
                                  f'ReplicaSet "{name}" is progressing.')
    status["conditions"] = conds
    return status


def _progressed(old: Obj, new: Obj) -> bool:
    keys = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas")
    return any(old.get(k, 0) != new.get(k, 0) for k in keys)
