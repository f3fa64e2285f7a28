"""Scheduler scoring as pure functions, weighted like the default profile, best node first."""

from __future__ import annotations

from netkube.client import Obj
from netkube.scheduler.filters import _expr_matches, tolerates
from netkube.scheduler.podaffinity import Placed, affinity_score
from netkube.scheduler.resources import free_fraction

# Default plugin weights: TaintToleration 3, NodeAffinity 2, InterPodAffinity 2, spreading 2, fit 1.
W_TAINT, W_NODE_AFF, W_POD_AFF, W_SPREAD, W_FIT = 3, 2, 2, 2, 1


def owner_uid(pod: Obj) -> str | None:
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")  # type: ignore[no-any-return]
    return None


def prefer_no_schedule_count(pod: Obj, node: Obj) -> int:
    tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                   if t.get("effect") in (None, "", "PreferNoSchedule")]
    return sum(1 for t in (node.get("spec") or {}).get("taints") or []
               if t.get("effect") == "PreferNoSchedule" and not any(tolerates(x, t) for x in tolerations))


def preferred_node_affinity(pod: Obj, node: Obj) -> int:
    prefs = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
             .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    labels = node["metadata"].get("labels") or {}
    return sum(p.get("weight", 0) for p in prefs
               if all(_expr_matches(e, labels) for e in (p.get("preference") or {}).get("matchExpressions") or []))


def _normalise(raw: dict[str, float], reverse: bool = False) -> dict[str, float]:
    """Scale to 0..100 over the nodes, as each plugin's NormalizeScore does."""
    lo, hi = min(raw.values(), default=0), max(raw.values(), default=0)
    if hi == lo:
        return {n: (100.0 if reverse or hi > 0 else 0.0) for n in raw}
    return {n: 100.0 * ((hi - v) if reverse else (v - lo)) / (hi - lo) for n, v in raw.items()}


def rank_nodes(pod: Obj, nodes: list[str], placed: list[tuple[str, Obj]],
               node_objs: dict[str, Obj] | None = None) -> list[str]:
    """Feasible node names best first. placed = (node name, pod) pairs. Ties go to the node with the
    fewest pods of the same owner, then fewest pods, then name (upstream picks ties at random)."""
    owner = owner_uid(pod)
    same = {n: 0 for n in nodes}
    total = {n: 0 for n in nodes}
    for name, other in placed:
        if name in total:
            total[name] += 1
            if owner is not None and owner_uid(other) == owner:
                same[name] += 1
    score = {n: W_SPREAD * s for n, s in _normalise({n: float(v) for n, v in same.items()}, reverse=True).items()}
    if node_objs:
        with_nodes: Placed = [(node_objs[n], p) for n, p in placed if n in node_objs]
        parts = [
            (W_TAINT, _normalise({n: float(prefer_no_schedule_count(pod, node_objs[n])) for n in nodes}, True)),
            (W_NODE_AFF, _normalise({n: float(preferred_node_affinity(pod, node_objs[n])) for n in nodes})),
            (W_POD_AFF, _normalise({n: float(affinity_score(pod, node_objs[n], with_nodes)) for n in nodes})),
        ]
        fit = {n: free_fraction(pod, node_objs[n], [p for m, p in placed if m == n]) for n in nodes}
        if all(v is not None for v in fit.values()):
            parts.append((W_FIT, {n: 100.0 * (v or 0.0) for n, v in fit.items()}))
        for weight, part in parts:
            for n in nodes:
                score[n] += weight * part[n]
    return sorted(nodes, key=lambda n: (-round(score[n], 6), same[n], total[n], n))
