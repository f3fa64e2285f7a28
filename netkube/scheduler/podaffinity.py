"""Inter-pod affinity and anti-affinity by topologyKey (upstream InterPodAffinity filter and score)."""

from __future__ import annotations

from netkube.client import Obj
from netkube.labels import selector_matches

MSG_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
MSG_AFFINITY = "node(s) didn't match pod affinity rules"
MSG_ANTI = "node(s) didn't match pod anti-affinity rules"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"

Placed = list[tuple[Obj, Obj]]  # (node, pod) for every pod bound to a node


def _terms(pod: Obj, kind: str, which: str) -> list[Obj]:
    return list((((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}).get(which) or [])


def term_matches(term: Obj, owner: Obj, other: Obj) -> bool:
    """Does `other` match a term written in `owner`'s spec (namespaces default to owner's own)?"""
    namespaces = term.get("namespaces") or []
    if term.get("namespaceSelector") == {}:
        namespaces = []  # an empty namespaceSelector means every namespace
    elif not namespaces:
        namespaces = [owner["metadata"].get("namespace")]
    if namespaces and other["metadata"].get("namespace") not in namespaces:
        return False
    return selector_matches(term.get("labelSelector") or {}, other["metadata"].get("labels") or {}) \
        if term.get("labelSelector") is not None else False


def same_topology(a: Obj, b: Obj, key: str) -> bool:
    la, lb = a["metadata"].get("labels") or {}, b["metadata"].get("labels") or {}
    return key in la and key in lb and la[key] == lb[key]


def filter_pod_affinity(pod: Obj, node: Obj, placed: Placed) -> str | None:
    for other_node, other in placed:
        for term in _terms(other, "podAntiAffinity", REQUIRED):
            if term_matches(term, other, pod) and same_topology(node, other_node, term.get("topologyKey", "")):
                return MSG_EXISTING_ANTI
    for term in _terms(pod, "podAffinity", REQUIRED):
        key = term.get("topologyKey", "")
        matches = [(n, p) for n, p in placed if term_matches(term, pod, p)]
        if any(same_topology(node, n, key) for n, _ in matches):
            continue
        # The first pod of a group that matches its own affinity may go anywhere with the key.
        if not matches and term_matches(term, pod, pod) and key in (node["metadata"].get("labels") or {}):
            continue
        return MSG_AFFINITY
    for term in _terms(pod, "podAntiAffinity", REQUIRED):
        if any(term_matches(term, pod, p) and same_topology(node, n, term.get("topologyKey", "")) for n, p in placed):
            return MSG_ANTI
    return None


def affinity_score(pod: Obj, node: Obj, placed: Placed) -> int:
    """Sum of preferred term weights satisfied (affinity) minus violated (anti-affinity), including
    the terms of existing pods toward this one, as upstream's raw InterPodAffinity score."""
    score = 0
    for w in _terms(pod, "podAffinity", PREFERRED):
        t = w.get("podAffinityTerm") or {}
        score += w.get("weight", 0) * sum(1 for n, p in placed if term_matches(t, pod, p)
                                          and same_topology(node, n, t.get("topologyKey", "")))
    for w in _terms(pod, "podAntiAffinity", PREFERRED):
        t = w.get("podAffinityTerm") or {}
        score -= w.get("weight", 0) * sum(1 for n, p in placed if term_matches(t, pod, p)
                                          and same_topology(node, n, t.get("topologyKey", "")))
    for n, p in placed:
        for w in _terms(p, "podAffinity", PREFERRED):
            t = w.get("podAffinityTerm") or {}
            if term_matches(t, p, pod) and same_topology(node, n, t.get("topologyKey", "")):
                score += w.get("weight", 0)
        for w in _terms(p, "podAntiAffinity", PREFERRED):
            t = w.get("podAffinityTerm") or {}
            if term_matches(t, p, pod) and same_topology(node, n, t.get("topologyKey", "")):
                score -= w.get("weight", 0)
    return score
