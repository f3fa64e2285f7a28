"""CronJob controller: create a Job per schedule time, honouring concurrencyPolicy and history limits."""

from __future__ import annotations

import time
from collections.abc import Callable

from netkube.client import ApiError, Obj
from netkube.controllers.base import clone, controller_ref, ns_key, owner_reference, parse_time, split_key
from netkube.controllers.cronschedule import ScheduleError, most_recent, parse, utc
from netkube.controllers.events import EventRecorder
from netkube.controllers.kinds import CRONJOBS, JOBS
from netkube.controllers.workload import owned
from netkube.controllers.workqueue import WorkQueue

SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def job_state(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def job_name(cronjob: str, scheduled: float) -> str:
    """<cronjob>-<scheduled time in minutes since the epoch>, as upstream getJobName."""
    return f"{cronjob}-{int(scheduled // 60)}"


def job_ref(job: Obj) -> Obj:
    md = job["metadata"]
    return {"kind": "Job", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"],
            "apiVersion": "batch/v1", "resourceVersion": md.get("resourceVersion")}


def build_job(cj: Obj, scheduled: float) -> Obj:
    tmpl = cj["spec"].get("jobTemplate") or {}
    md = tmpl.get("metadata") or {}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(cj["metadata"]["name"], scheduled), "namespace": cj["metadata"]["namespace"],
                         "labels": clone(md.get("labels") or {}),
                         "annotations": {**clone(md.get("annotations") or {}),
                                         SCHEDULED_AT: utc(scheduled).strftime("%Y-%m-%dT%H:%M:%SZ")},
                         "ownerReferences": [owner_reference(cj)]},
            "spec": clone(tmpl.get("spec") or {})}


class CronJobController:
    def __init__(self, client: object, informers: object, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.inf = informers
        self.clock = clock
        self.queue = WorkQueue("cronjob")
        self.recorder = EventRecorder(client, "cronjob-controller")  # type: ignore[arg-type]

    def register(self) -> None:
        self.inf.cronjobs.add_handler(lambda t, c, o: self.queue.add(ns_key(c)))  # type: ignore[attr-defined]
        self.inf.jobs.add_handler(self._on_job)  # type: ignore[attr-defined]

    def _on_job(self, etype: str, job: Obj, old: Obj | None) -> None:
        ref = controller_ref(job)
        if ref and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata']['namespace']}/{ref['name']}")

    async def run(self) -> None:
        await self.queue.run(self.sync)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        cj = self.inf.cronjobs.get(name, ns)  # type: ignore[attr-defined]
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return
        now = self.clock()
        status = clone(cj.get("status") or {})
        jobs = owned(self.inf.jobs, cj)  # type: ignore[attr-defined]
        await self._track(cj, status, jobs)
        jobs = await self._history(cj, jobs)
        wait = None if cj["spec"].get("suspend") else await self._schedule(cj, status, jobs, now)
        if status != (cj.get("status") or {}):
            body = {"status": {**{k: None for k in cj.get("status") or {} if k not in status}, **status}}
            await self.client.patch(CRONJOBS, name, body, ns, sub="status")  # type: ignore[attr-defined]
        if wait is not None:
            self.queue.add_after(key, wait)

    async def _track(self, cj: Obj, status: Obj, jobs: list[Obj]) -> None:
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        active = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            state = job_state(job) if job else None
            if job is not None and state is None:
                active.append(ref)
            elif job is not None:
                await self.recorder.normal(cj, "SawCompletedJob", f"Saw completed job: {ref['name']}, status: {state}")
                if state == "Complete":
                    status["lastSuccessfulTime"] = (job.get("status") or {}).get("completionTime")
        known = {r.get("uid") for r in active}
        active += [job_ref(j) for j in jobs if job_state(j) is None and j["metadata"]["uid"] not in known
                   and not j["metadata"].get("deletionTimestamp")]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _history(self, cj: Obj, jobs: list[Obj]) -> list[Obj]:
        gone = set()
        for state, field, default in (("Complete", "successfulJobsHistoryLimit", 3), ("Failed", "failedJobsHistoryLimit", 1)):
            limit = cj["spec"].get(field, default)
            done = sorted((j for j in jobs if job_state(j) == state),
                          key=lambda j: (j.get("status") or {}).get("startTime") or j["metadata"].get("creationTimestamp", ""))
            for j in done[: max(0, len(done) - limit)]:
                await self._delete(cj, j)
                gone.add(j["metadata"]["uid"])
        return [j for j in jobs if j["metadata"]["uid"] not in gone]

    async def _delete(self, cj: Obj, job: Obj) -> None:
        try:
            await self.client.delete(JOBS, job["metadata"]["name"], job["metadata"]["namespace"])  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code != 404:
                raise
        await self.recorder.normal(cj, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")

    async def _schedule(self, cj: Obj, status: Obj, jobs: list[Obj], now: float) -> float | None:
        try:
            sched = parse(cj["spec"].get("schedule", ""))
        except ScheduleError as e:
            await self.recorder.warning(cj, "UnparseableSchedule", f"unparseable schedule: {cj['spec'].get('schedule')!r} : {e}")
            return None
        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cj["metadata"].get("creationTimestamp")) or now
        scheduled, missed = most_recent(sched, utc(earliest), utc(now))
        next_wait = (sched.next_after(utc(now)).timestamp() - now) + 0.01
        if scheduled is None:
            return next_wait
        if missed > 100:
            await self.recorder.warning(cj, "TooManyMissedTimes", f"too many missed start times: {missed}. Set or "
                                        "decrease .spec.startingDeadlineSeconds or check clock skew")
        deadline = cj["spec"].get("startingDeadlineSeconds")
        if deadline is not None and scheduled.timestamp() + deadline < now:
            await self.recorder.warning(cj, "MissSchedule", "Missed scheduled time to start a job: "
                                        + scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000"))
            return next_wait
        policy = cj["spec"].get("concurrencyPolicy", "Allow")
        if status.get("active") and policy == "Forbid":
            await self.recorder.normal(cj, "JobAlreadyActive",
                                       "Not starting job because prior execution is running and concurrency policy is Forbid")
            return next_wait
        if status.get("active") and policy == "Replace":
            for ref in status.pop("active"):
                job = next((j for j in jobs if j["metadata"]["uid"] == ref.get("uid")), None)
                if job is not None:
                    await self._delete(cj, job)
        try:
            made = await self.client.create(JOBS, build_job(cj, scheduled.timestamp()), cj["metadata"]["namespace"])  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code != 409:
                await self.recorder.warning(cj, "FailedCreate", f"Error creating job: {e}")
                raise
        else:
            await self.recorder.normal(cj, "SuccessfulCreate", f"Created job {made['metadata']['name']}")
            status["active"] = (status.get("active") or []) + [job_ref(made)]
        status["lastScheduleTime"] = scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
        return next_wait
