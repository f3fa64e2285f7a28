"""StatefulSet, DaemonSet, Job and CronJob columns as upstream's printers compute them."""

from __future__ import annotations

from datetime import UTC, datetime

from ..selectors import label_selector_string
from .age import human_duration, parse_time
from .printer import AGE, NAME, Col, Obj, Printer, created, name, or_none

WIDE = (Col("Containers", priority=1), Col("Images", priority=1))


def _pod_spec(template: Obj | None) -> Obj:
    return ((template or {}).get("spec")) or {}


def _containers(pod_spec: Obj) -> list[str]:
    cs = pod_spec.get("containers") or []
    return [",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)]


def _sts(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [name(o), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", created(o),
            *_containers(_pod_spec(spec.get("template")))]


STATEFULSETS = Printer((NAME, Col("Ready"), AGE, *WIDE), _sts)


def _ds(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    pod_spec = _pod_spec(spec.get("template"))
    sel = ",".join(f"{k}={v}" for k, v in (pod_spec.get("nodeSelector") or {}).items())
    return [name(o), st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0), st.get("numberReady", 0),
            st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0), or_none(sel), created(o),
            *_containers(pod_spec), label_selector_string(spec.get("selector"))]


DAEMONSETS = Printer(
    (NAME, Col("Desired", "integer"), Col("Current", "integer"), Col("Ready", "integer"), Col("Up-to-date", "integer"),
     Col("Available", "integer"), Col("Node Selector"), AGE, *WIDE, Col("Selector", priority=1)),
    _ds,
)


def _has(st: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in st.get("conditions") or [])


def job_status(o: Obj) -> str:
    st = o.get("status") or {}
    if _has(st, "Complete"):
        return "Complete"
    if _has(st, "Failed"):
        return "Failed"
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _has(st, ctype):
            return ctype
    return "Running"


def _job(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    succeeded = st.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration(((end or datetime.now(UTC)) - start).total_seconds())
    return [name(o), job_status(o), completions, duration, created(o), *_containers(_pod_spec(spec.get("template"))),
            label_selector_string(spec.get("selector"))]


JOBS = Printer(
    (NAME, Col("Status"), Col("Completions"), Col("Duration"), AGE, *WIDE, Col("Selector", priority=1)), _job,
)


def _cronjob(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    job_spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    last = parse_time(st.get("lastScheduleTime"))
    last_cell = human_duration((datetime.now(UTC) - last).total_seconds()) if last else "<none>"
    return [name(o), spec.get("schedule", ""), or_none(spec.get("timeZone")), str(bool(spec.get("suspend"))),
            len(st.get("active") or []), last_cell, created(o), *_containers(_pod_spec(job_spec.get("template"))),
            label_selector_string(job_spec.get("selector")) if job_spec.get("selector") else "<none>"]


CRONJOBS = Printer(
    (NAME, Col("Schedule"), Col("Timezone"), Col("Suspend", "boolean"), Col("Active", "integer"),
     Col("Last Schedule"), AGE, *WIDE, Col("Selector", priority=1)),
    _cronjob,
)
