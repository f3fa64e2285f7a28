"""Pure rolling-update arithmetic of the deployment controller (upstream deployment/util)."""

from __future__ import annotations

import copy
import math
from typing import Any

from netkube.client import Obj

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"


class RolloutError(ValueError):
    """A deployment strategy value the user must fix (e.g. maxSurge: "abc")."""


def scaled_value(value: Any, total: int, round_up: bool, default: str) -> int:
    """An int-or-percent field: percent of total, rounded up (surge) or down (unavailable)."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%") and text[:-1].isdigit():
        exact = int(text[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    if text.isdigit():
        return int(text)
    raise RolloutError(f"invalid value {value!r}: use an integer or a percentage such as \"25%\"")


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable); both zero would stall a rollout, so upstream forces unavailable=1."""
    replicas = deployment["spec"].get("replicas", 1)
    ru = (deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = scaled_value(ru.get("maxSurge"), replicas, True, "25%")
    unavailable = scaled_value(ru.get("maxUnavailable"), replicas, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def spec_replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 0))


def new_rs_replicas(deployment: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many replicas the new ReplicaSet may have now (upstream NewRSNewReplicas, RollingUpdate)."""
    replicas = deployment["spec"].get("replicas", 1)
    current_new = spec_replicas(new_rs) if new_rs else 0
    surge, _ = fenceposts(deployment)
    total = sum(spec_replicas(rs) for rs in all_rss)
    max_total = replicas + surge
    if total >= max_total:
        return current_new
    return current_new + max(0, min(max_total - total, replicas - current_new))


def old_scale_down_budget(deployment: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many old replicas may go now without breaking maxUnavailable (reconcileOldReplicaSets)."""
    replicas = deployment["spec"].get("replicas", 1)
    _, unavailable = fenceposts(deployment)
    min_available = replicas - unavailable
    available = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in all_rss)
    return max(0, available - min_available)


def template_without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return t


def revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0
