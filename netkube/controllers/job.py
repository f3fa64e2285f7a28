"""Job controller: run pods to spec.completions, parallelism at a time, fail past backoffLimit."""

from __future__ import annotations

import time

from netkube.client import Obj
from netkube.controllers.base import (
    clone,
    controller_ref,
    now_rfc3339,
    ns_key,
    parse_time,
    pod_is_ready,
    split_key,
)
from netkube.controllers.events import EventRecorder
from netkube.controllers.kinds import JOBS
from netkube.controllers.workload import create_pod, delete_pod, is_terminal, owned, pod_from_template
from netkube.controllers.workqueue import WorkQueue

BACKOFF_LIMIT_MSG = "Job has reached the specified backoff limit"
DEADLINE_MSG = "Job was active longer than specified deadline"


def job_labels(job: Obj) -> dict[str, str]:
    md = job["metadata"]
    return {"batch.kubernetes.io/controller-uid": md["uid"], "batch.kubernetes.io/job-name": md["name"],
            "controller-uid": md["uid"], "job-name": md["name"]}


def restarts(pod: Obj) -> int:
    st = pod.get("status") or {}
    return sum(c.get("restartCount", 0) for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []))


def counts(pods: list[Obj]) -> tuple[list[Obj], int, int]:
    """(active pods, succeeded, failed) as the Job controller counts them."""
    active = [p for p in pods if not is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
    succeeded = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
    failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
    return active, succeeded, failed


def verdict(job: Obj, active: list[Obj], succeeded: int, failed: int, now: float) -> tuple[str, str, str] | None:
    """(condition type, reason, message) once the Job is finished, else None."""
    spec = job["spec"]
    limit = spec.get("backoffLimit", 6)
    # With OnFailure the kubelet restarts containers in place: restarts count as failures.
    on_failure = (spec.get("template", {}).get("spec") or {}).get("restartPolicy") == "OnFailure"
    if failed > limit or (on_failure and limit >= 0 and sum(restarts(p) for p in active) + failed > limit):
        return "Failed", "BackoffLimitExceeded", BACKOFF_LIMIT_MSG
    start = parse_time((job.get("status") or {}).get("startTime"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and start is not None and now - start >= deadline:
        return "Failed", "DeadlineExceeded", DEADLINE_MSG
    completions = spec.get("completions")
    if (completions is not None and succeeded >= completions) or (completions is None and succeeded and not active):
        return "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
    return None


def wanted_active(job: Obj, succeeded: int) -> int:
    parallelism = job["spec"].get("parallelism", 1)
    completions = job["spec"].get("completions")
    if completions is None:
        return 0 if succeeded else parallelism
    return max(0, min(parallelism, completions - succeeded))


def finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


class JobController:
    def __init__(self, client: object, informers: object, backoff: float = 10.0) -> None:
        self.client = client
        self.inf = informers
        self.backoff = backoff  # upstream DefaultJobPodFailureBackOff, doubled per failure
        self.queue = WorkQueue("job")
        self.recorder = EventRecorder(client, "job-controller")  # type: ignore[arg-type]
        self._failure_seen: dict[str, tuple[int, float]] = {}

    def register(self) -> None:
        self.inf.jobs.add_handler(lambda t, j, o: self.queue.add(ns_key(j)))  # type: ignore[attr-defined]
        self.inf.pods.add_handler(self._on_pod)  # type: ignore[attr-defined]

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "Job":
            self.queue.add(f"{pod['metadata']['namespace']}/{ref['name']}")

    async def run(self) -> None:
        await self.queue.run(self.sync)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        job = self.inf.jobs.get(name, ns)  # type: ignore[attr-defined]
        if job is None or job["metadata"].get("deletionTimestamp") or finished(job):
            return
        now = time.time()
        status = clone(job.get("status") or {})
        status.setdefault("startTime", now_rfc3339())
        job = {**job, "status": status}
        active, succeeded, failed = counts(owned(self.inf.pods, job))  # type: ignore[attr-defined]
        done = verdict(job, active, succeeded, failed, now)
        if done is not None:
            for p in active:
                await delete_pod(self.client, self.recorder, job, p)
            active = []
            await self._finish(job, status, done)
        elif not job["spec"].get("suspend"):
            active = await self._scale(key, job, active, succeeded, failed, now)
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed,
                       "ready": sum(1 for p in active if pod_is_ready(p))})
        for k in ("active", "succeeded", "failed"):
            if not status[k]:
                status.pop(k)  # omitempty, as upstream
        old = (self.inf.jobs.get(name, ns) or {}).get("status") or {}  # type: ignore[attr-defined]
        if status != old:
            body = {"status": {**{k: None for k in old if k not in status}, **status}}  # null drops a zeroed counter
            await self.client.patch(JOBS, name, body, ns, sub="status")  # type: ignore[attr-defined]
        deadline = job["spec"].get("activeDeadlineSeconds")
        if done is None and deadline is not None:
            self.queue.add_after(key, max(0.05, (parse_time(status["startTime"]) or now) + deadline - now))

    async def _scale(self, key: str, job: Obj, active: list[Obj], succeeded: int, failed: int, now: float) -> list[Obj]:
        want = wanted_active(job, succeeded)
        if len(active) > want:
            for p in active[want:]:
                await delete_pod(self.client, self.recorder, job, p)
            return active[:want]
        seen_failed, since = self._failure_seen.get(key, (0, now))
        if failed != seen_failed:
            self._failure_seen[key] = (failed, now)
            since = now
        wait = 0.0 if not failed else min(self.backoff * 2 ** (failed - 1), 360.0) - (now - since)
        if wait > 0 and len(active) < want:
            self.queue.add_after(key, wait)  # pod failure back-off before creating replacements
            return active
        for _ in range(want - len(active)):
            pod = pod_from_template(job, job["spec"].get("template") or {}, job_labels(job))
            made = await create_pod(self.client, self.recorder, job, pod)
            if made:
                active.append(made)
        return active

    async def _finish(self, job: Obj, status: Obj, done: tuple[str, str, str]) -> None:
        ctype, reason, message = done
        now = now_rfc3339()
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype] + [
            {"type": ctype, "status": "True", "reason": reason, "message": message,
             "lastProbeTime": now, "lastTransitionTime": now}]
        if ctype == "Complete":
            status["completionTime"] = now
            await self.recorder.normal(job, "Completed", "Job completed")
        else:
            await self.recorder.warning(job, reason, message)
