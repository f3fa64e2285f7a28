"""Deployment status and its Available/Progressing conditions, with upstream reasons and texts."""

from __future__ import annotations

from netkube.client import Obj
from netkube.controllers.base import now_rfc3339, parse_time
from netkube.controllers.rollout import desired, max_unavailable, spec_replicas, st

NO_DEADLINE = 2**31 - 1  # math.MaxInt32: progressDeadlineSeconds "disabled"


def condition(d_status: Obj, ctype: str) -> Obj | None:
    return next((c for c in d_status.get("conditions") or [] if c.get("type") == ctype), None)


def new_condition(ctype: str, status: str, reason: str, message: str) -> Obj:
    now = now_rfc3339()
    return {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status and reason is no change; else replace, moving it last and
    keeping lastTransitionTime when the status did not flip."""
    cur = condition(status, cond["type"])
    if cur and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur and cur.get("status") == cond["status"]:
        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, ctype: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype]


def has_deadline(d: Obj) -> bool:
    v = d["spec"].get("progressDeadlineSeconds", 600)
    return v is not None and v != NO_DEADLINE


def calculate_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> Obj:
    available = sum(st(r, "availableReplicas") for r in all_rss)
    total = sum(spec_replicas(r) for r in all_rss)
    status: Obj = {
        "observedGeneration": d["metadata"].get("generation", 1),
        "replicas": sum(st(r, "replicas") for r in all_rss),
        "updatedReplicas": st(new_rs, "replicas"),
        "readyReplicas": sum(st(r, "readyReplicas") for r in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
        "conditions": [dict(c) for c in (d.get("status") or {}).get("conditions") or []],
    }
    if (d.get("status") or {}).get("collisionCount") is not None:
        status["collisionCount"] = d["status"]["collisionCount"]
    if available >= desired(d) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", "MinimumReplicasAvailable",
                                            "Deployment has minimum availability."))
    else:
        set_condition(status, new_condition("Available", "False", "MinimumReplicasUnavailable",
                                            "Deployment does not have minimum availability."))
    return status


def complete(d: Obj, s: Obj) -> bool:
    n = desired(d)
    return (s.get("updatedReplicas", 0) == n and s.get("replicas", 0) == n and s.get("availableReplicas", 0) == n
            and s.get("observedGeneration", 0) >= d["metadata"].get("generation", 1))


def progressing(d: Obj, s: Obj) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = s.get("replicas", 0) - s.get("updatedReplicas", 0)
    return (s.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or new_old < old_old
            or s.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or s.get("availableReplicas", 0) > old.get("availableReplicas", 0))


def timed_out(d: Obj, s: Obj, now: float) -> bool:
    cond = condition(s, "Progressing")
    if not has_deadline(d) or cond is None or cond.get("reason") == "NewReplicaSetAvailable":
        return False
    if cond.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = parse_time(cond.get("lastUpdateTime")) or now
    return since + d["spec"].get("progressDeadlineSeconds", 600) < now


def rollout_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None, now: float) -> Obj:
    """syncRolloutStatus: the status plus the Progressing verdict for the current rollout."""
    s = calculate_status(d, all_rss, new_rs)
    if not has_deadline(d):
        remove_condition(s, "Progressing")
    cur = condition(d.get("status") or {}, "Progressing")
    done = s["replicas"] == s["updatedReplicas"] and cur is not None and cur.get("reason") == "NewReplicaSetAvailable"
    what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{d["metadata"]["name"]}"'
    if has_deadline(d) and not done:
        if complete(d, s):
            set_condition(s, new_condition("Progressing", "True", "NewReplicaSetAvailable",
                                           f"{what} has successfully progressed."))
        elif progressing(d, s):
            # Progress refreshes lastUpdateTime even with the same reason (upstream special case).
            c = new_condition("Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing.")
            if cur is not None and cur.get("status") == "True":
                c["lastTransitionTime"] = cur.get("lastTransitionTime")
            remove_condition(s, "Progressing")
            set_condition(s, c)
        elif timed_out(d, s, now):
            set_condition(s, new_condition("Progressing", "False", "ProgressDeadlineExceeded",
                                           f"{what} has timed out progressing."))
    # Upstream's status fields are omitempty: zero counters are not written.
    for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
        if not s[k]:
            s.pop(k)
    return s


def requeue_after(d: Obj, s: Obj, now: float) -> float | None:
    """Seconds until the progress deadline would pass for a rollout still under way (requeueStuckDeployment)."""
    cond = condition(s, "Progressing")
    if not has_deadline(d) or cond is None or cond.get("reason") in ("NewReplicaSetAvailable",
                                                                     "ProgressDeadlineExceeded"):
        return None
    since = parse_time(cond.get("lastUpdateTime")) or now
    return max(0.0, since + d["spec"].get("progressDeadlineSeconds", 600) - now) + 1.0
