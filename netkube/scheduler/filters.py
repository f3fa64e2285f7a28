"""Scheduler filters as pure functions: each returns None (fits) or the upstream failure reason."""

from __future__ import annotations

from netkube.client import Obj
from netkube.scheduler.podaffinity import MSG_AFFINITY as MSG_POD_AFFINITY
from netkube.scheduler.podaffinity import Placed, filter_pod_affinity
from netkube.scheduler.resources import insufficient

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
MSG_UNSCHEDULABLE = "node(s) were unschedulable"
MSG_AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Upstream Toleration.ToleratesTaint: empty effect matches all effects, empty key with
    Exists matches all keys, Equal (or empty operator) compares values."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taint(pod: Obj, taints: list[Obj]) -> Obj | None:
    tolerations = pod.get("spec", {}).get("tolerations") or []
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue  # PreferNoSchedule only affects scoring
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _effective_taints(node: Obj) -> list[Obj]:
    """The node's taints plus the one the node lifecycle controller would add for a node that is not
    Ready (not-ready) or silent (unreachable), so a NotReady node is refused even before tainting."""
    taints = list(node.get("spec", {}).get("taints") or [])
    status = next((c.get("status") for c in node.get("status", {}).get("conditions") or []
                   if c.get("type") == "Ready"), "Unknown")
    if status != "True":
        key = UNREACHABLE_TAINT if status == "Unknown" else NOT_READY_TAINT
        if not any(t.get("key") == key for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


def filter_unschedulable(pod: Obj, node: Obj) -> str | None:
    if not node.get("spec", {}).get("unschedulable"):
        return None
    taint = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    if any(tolerates(t, taint) for t in pod.get("spec", {}).get("tolerations") or []):
        return None
    return MSG_UNSCHEDULABLE


def filter_taints(pod: Obj, node: Obj) -> str | None:
    taint = untolerated_taint(pod, _effective_taints(node))
    if taint is None:
        return None
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '') or ''}}}"


def _expr_matches(expr: Obj, labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
    has, value = key in labels, labels.get(key)
    if op == "In":
        return has and value in values
    if op == "NotIn":
        return not has or value not in values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and values:
        try:
            a, b = int(value or ""), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def filter_node_affinity(pod: Obj, node: Obj) -> str | None:
    labels = node["metadata"].get("labels") or {}
    spec = pod.get("spec", {})
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return MSG_AFFINITY
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if required:
        # nodeSelectorTerms are ORed; the expressions inside one term are ANDed.
        terms = required.get("nodeSelectorTerms") or []
        if not any(all(_expr_matches(e, labels) for e in t.get("matchExpressions") or [])
                   and all(_expr_matches(e, {"metadata.name": node["metadata"]["name"]})
                           for e in t.get("matchFields") or [])
                   for t in terms):
            return MSG_AFFINITY
    return None


# Upstream's default profile order; a node reports only the first plugin that rejects it.
FILTERS = (filter_unschedulable, filter_taints, filter_node_affinity)
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


def node_fits(pod: Obj, node: Obj) -> str | None:
    for f in FILTERS:
        reason = f(pod, node)
        if reason is not None:
            return reason
    return None


def node_fit_reasons(pod: Obj, node: Obj, placed: Placed) -> list[str]:
    """All reasons of the first failing plugin: NodeUnschedulable, TaintToleration, NodeAffinity,
    NodeResourcesFit (one reason per short resource), InterPodAffinity. [] means the pod fits."""
    reason = node_fits(pod, node)
    if reason is not None:
        return [reason]
    name = node["metadata"]["name"]
    on_node = [p for n, p in placed if n["metadata"]["name"] == name]
    return insufficient(pod, node, on_node) or [r for r in [filter_pod_affinity(pod, node, placed)] if r]


def preemption_verdict(reasons: list[str]) -> str:
    """Upstream preemption only helps nodes whose failure removing lower-priority pods could fix;
    with no lower-priority pods in the emulator there are never victims."""
    unresolvable = reasons[0] in (MSG_UNSCHEDULABLE, MSG_AFFINITY, MSG_POD_AFFINITY) or \
        reasons[0].startswith("node(s) had untolerated taint")
    return NOT_HELPFUL if unresolvable else NO_VICTIMS


def _histogram(total: int, counts: dict[str, int]) -> str:
    parts = sorted(f"{n} {r}" for r, n in counts.items())
    return f"0/{total} nodes are available: {', '.join(parts)}."


def fit_error_message(total: int, reasons: dict[str, int], preemption: dict[str, int] | None = None) -> str:
    """The FailedScheduling text (upstream FitError.Error): "<count> <reason>" sorted as strings, then
    the preemption postfilter verdict in the same form."""
    preemption = preemption or {NOT_HELPFUL: total}
    return f"{_histogram(total, reasons)} preemption: {_histogram(total, preemption)}"
