"""Pure rolling-update arithmetic of the deployment controller (upstream deployment/util, rolling.go)."""

from __future__ import annotations

import copy
import math
from typing import Any

from netkube.client import Obj

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Annotations the controller never copies from a Deployment to its ReplicaSets (annotationsToSkip).
SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
                    DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"}
REV_HISTORY_CHARS = 2000  # upstream maxRevHistoryLengthInChars


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


def is_rolling(d: Obj) -> bool:
    return (d["spec"].get("strategy") or {}).get("type", "RollingUpdate") != "Recreate"


def desired(d: Obj) -> int:
    return int(d["spec"].get("replicas", 1))


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable); both zero would stall a rollout, so upstream forces unavailable=1."""
    replicas = desired(deployment)
    ru = (deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = scaled_value(ru.get("maxSurge"), replicas, True, "25%")
    unavailable = scaled_value(ru.get("maxUnavailable"), replicas, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    return fenceposts(d)[1] if is_rolling(d) and desired(d) else 0


def spec_replicas(rs: Obj | None) -> int:
    return int(rs["spec"].get("replicas", 0)) if rs else 0


def st(rs: Obj | None, field: str) -> int:
    return int(((rs or {}).get("status") or {}).get(field, 0))


def new_rs_replicas(deployment: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """How many replicas the new ReplicaSet may have now (upstream NewRSNewReplicas)."""
    replicas = desired(deployment)
    if not is_rolling(deployment):
        return replicas
    current_new = spec_replicas(new_rs)
    total = sum(spec_replicas(rs) for rs in all_rss)
    max_total = replicas + max_surge(deployment)
    if total >= max_total:
        return current_new
    return current_new + min(max_total - total, replicas - current_new)


def by_creation(rss: list[Obj]) -> list[Obj]:
    return sorted(rss, key=lambda r: (r["metadata"].get("creationTimestamp", ""), r["metadata"]["name"]))


def old_scale_down_plan(d: Obj, old: list[Obj], new_rs: Obj) -> dict[str, int]:
    """reconcileOldReplicaSets: first drop unhealthy old replicas (cleanupUnhealthyReplicas), then
    available ones down to minAvailable (scaleDownOldReplicaSetsForRollingUpdate). name -> new size."""
    if not sum(spec_replicas(r) for r in old):
        return {}
    min_available = desired(d) - max_unavailable(d)
    all_count = sum(spec_replicas(r) for r in old) + spec_replicas(new_rs)
    new_unavailable = spec_replicas(new_rs) - st(new_rs, "availableReplicas")
    budget = all_count - min_available - new_unavailable
    if budget <= 0:
        return {}
    sizes = {r["metadata"]["name"]: spec_replicas(r) for r in old}
    done = 0
    for rs in by_creation(old):
        name = rs["metadata"]["name"]
        if done >= budget:
            break
        unhealthy = sizes[name] - st(rs, "availableReplicas")
        if sizes[name] == 0 or unhealthy <= 0:
            continue
        down = min(budget - done, unhealthy)
        sizes[name] -= down
        done += down
    # The availability check reads status counts, which the cleanup above did not change.
    available = sum(st(r, "availableReplicas") for r in old) + st(new_rs, "availableReplicas")
    if available > min_available:
        want, done = available - min_available, 0
        for rs in by_creation(old):
            name = rs["metadata"]["name"]
            if done >= want:
                break
            if sizes[name] == 0:
                continue
            down = min(sizes[name], want - done)
            sizes[name] -= down
            done += down
    return {n: v for n, v in sizes.items() if v != spec_replicas(next(r for r in old if r["metadata"]["name"] == n))}


def template_without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    md = t.get("metadata") or {}
    labels = md.get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    # Upstream compares Go structs: a null creationTimestamp and an absent one are the same zero Time.
    if md.get("creationTimestamp", 0) is None:
        del md["creationTimestamp"]
    return t


def revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def new_rs_annotations(d: Obj, current: dict[str, str], new_revision: int, exists: bool) -> dict[str, str]:
    """SetNewReplicaSetAnnotations: copy the Deployment's own annotations (change-cause included),
    raise the revision, and remember the revisions a rolled-back-to ReplicaSet had before."""
    out = dict(current)
    for k, v in (d["metadata"].get("annotations") or {}).items():
        if k not in SKIP_ANNOTATIONS:
            out[k] = v
    old_text = out.get(REVISION)
    try:
        old_rev = int(old_text or "0")
    except ValueError:
        return out
    if old_rev < new_revision:
        out[REVISION] = str(new_revision)
        if old_text is not None:
            hist = [h for h in out.get(REVISION_HISTORY, "").split(",") if h] + [old_text]
            while len(",".join(hist)) > REV_HISTORY_CHARS and len(hist) > 1:
                hist.pop(0)
            out[REVISION_HISTORY] = ",".join(hist)
    if not exists:
        out.update(replicas_annotations(d))
    return out


def replicas_annotations(d: Obj) -> dict[str, str]:
    return {DESIRED_REPLICAS: str(desired(d)), MAX_REPLICAS: str(desired(d) + max_surge(d))}


def proportional_sizes(d: Obj, rss: list[Obj]) -> tuple[dict[str, int], str]:
    """Upstream scale(): spread a replica-count change over the active ReplicaSets in proportion to
    their size (by max-replicas annotation), leftovers to the largest. -> (name -> size, up/down)."""
    active = [r for r in rss if spec_replicas(r) > 0]
    total = sum(spec_replicas(r) for r in active)
    allowed = desired(d) + max_surge(d) if desired(d) > 0 else 0
    to_add = allowed - total
    if to_add == 0:
        return {r["metadata"]["name"]: spec_replicas(r) for r in active}, ""
    created = {r["metadata"]["name"]: r["metadata"].get("creationTimestamp", "") for r in active}
    if to_add > 0:  # ReplicaSetsBySizeNewer
        active.sort(key=lambda r: (-spec_replicas(r), _neg(created[r["metadata"]["name"]])))
    else:  # ReplicaSetsBySizeOlder
        active.sort(key=lambda r: (-spec_replicas(r), created[r["metadata"]["name"]]))
    sizes, added = {}, 0
    for rs in active:
        prop = _proportion(rs, d, to_add, added)
        sizes[rs["metadata"]["name"]] = spec_replicas(rs) + prop
        added += prop
    first = active[0]["metadata"]["name"]
    sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes, "up" if to_add > 0 else "down"


def _neg(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


def _proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if spec_replicas(rs) == 0 or to_add == added:
        return 0
    if desired(d) == 0:
        fraction = -spec_replicas(rs)
    else:
        try:
            annotated = int((rs["metadata"].get("annotations") or {})[MAX_REPLICAS])
        except (KeyError, ValueError):
            annotated = int((d.get("status") or {}).get("replicas", 0))
        new_size = spec_replicas(rs) * (desired(d) + max_surge(d)) / annotated if annotated else 0
        fraction = int(math.floor(new_size + 0.5)) - spec_replicas(rs)  # integer.RoundToInt32
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)
