"""Pod, Deployment and ReplicaSet columns as upstream's printers compute them."""

from __future__ import annotations

from datetime import UTC, datetime

from ..selectors import label_selector_string
from .age import human_duration, parse_time
from .printer import AGE, NAME, Col, Obj, Printer, created, name, or_none


def pod_status(pod: Obj) -> tuple[str, int, int, str]:
    """(reason, ready, restarts, last-restart suffix) following printPod in upstream printers.go."""
    spec, st = pod.get("spec") or {}, pod.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Pending"
    restarts, ready, last = 0, 0, None
    initializing = False
    inits = spec.get("initContainers") or []
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(inits)}"
        initializing = True
        break
    if not initializing:
        restarts, has_running = 0, False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            lt = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            if lt and (last is None or lt > last):
                last = lt
            state = cs.get("state") or {}
            wait, term = state.get("waiting"), state.get("terminated")
            if wait and wait.get("reason"):
                reason = wait["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
            reason = "Running" if conds.get("Ready") == "True" else "NotReady"
    md = pod.get("metadata") or {}
    if md.get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    suffix = ""
    t = parse_time(last)
    if restarts and t is not None:
        suffix = f" ({human_duration((datetime.now(UTC) - t).total_seconds())} ago)"
    return reason, ready, restarts, suffix


def _pod(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    reason, ready, restarts, suffix = pod_status(o)
    gates = spec.get("readinessGates") or []
    gate_cell = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gate_cell = f"{ok}/{len(gates)}"
    return [name(o), f"{ready}/{len(spec.get('containers') or [])}", reason, f"{restarts}{suffix}", created(o),
            or_none(st.get("podIP")), or_none(spec.get("nodeName")), or_none(st.get("nominatedNodeName")), gate_cell]


PODS = Printer(
    (NAME, Col("Ready"), Col("Status"), Col("Restarts"), AGE, Col("IP", priority=1), Col("Node", priority=1),
     Col("Nominated Node", priority=1), Col("Readiness Gates", priority=1)),
    _pod,
)


def _containers(o: Obj) -> tuple[str, str]:
    cs = (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deploy(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(o)
    return [name(o), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0), created(o), names, images, label_selector_string(spec.get("selector"))]


DEPLOYMENTS = Printer(
    (NAME, Col("Ready"), Col("Up-to-date", "integer"), Col("Available", "integer"), AGE,
     Col("Containers", priority=1), Col("Images", priority=1), Col("Selector", priority=1)),
    _deploy,
)


def _rs(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(o)
    return [name(o), spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0), created(o),
            names, images, label_selector_string(spec.get("selector"))]


REPLICASETS = Printer(
    (NAME, Col("Desired", "integer"), Col("Current", "integer"), Col("Ready", "integer"), AGE,
     Col("Containers", priority=1), Col("Images", priority=1), Col("Selector", priority=1)),
    _rs,
)
