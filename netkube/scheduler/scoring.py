"""Scheduler scoring as a pure function: spread an owner's pods, then balance pod counts."""

from __future__ import annotations

from netkube.client import Obj


def owner_uid(pod: Obj) -> str | None:
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")  # type: ignore[no-any-return]
    return None


def rank_nodes(pod: Obj, nodes: list[str], placed: list[tuple[str, Obj]]) -> list[str]:
    """Feasible node names best first: fewest pods of the same owner (SelectorSpread), then fewest
    pods overall (a stand-in for LeastAllocated), then name. placed = (node, pod) pairs."""
    owner = owner_uid(pod)
    same: dict[str, int] = {n: 0 for n in nodes}
    total: dict[str, int] = {n: 0 for n in nodes}
    for node, other in placed:
        if node not in total:
            continue
        total[node] += 1
        if owner is not None and owner_uid(other) == owner:
            same[node] += 1
    return sorted(nodes, key=lambda n: (same[n], total[n], n))
