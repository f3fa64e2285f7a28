"""Job, CronJob, StatefulSet and DaemonSet on FakeApiClient, plus the cron schedule maths."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from netkube import client as api
from netkube.controllers.cronjob import CronJobController, job_name
from netkube.controllers.cronschedule import ScheduleError, most_recent, parse
from netkube.controllers.kinds import CONTROLLERREVISIONS, CRONJOBS, DAEMONSETS, JOBS, STATEFULSETS
from netkube.testing import FakeApiClient
from netkube.testing.cluster import CP_TAINT, events, fake_cluster, live_pods
from netkube.testing.helpers import eventually, node

T = datetime(2024, 5, 4, 12, 7, 30, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize("schedule,after,expect", [
    ("*/15 * * * *", T, datetime(2024, 5, 4, 12, 15, tzinfo=UTC)),
    ("@hourly", T, datetime(2024, 5, 4, 13, 0, tzinfo=UTC)),
    ("@daily", T, datetime(2024, 5, 5, 0, 0, tzinfo=UTC)),
    ("30 9 * * mon-fri", T, datetime(2024, 5, 6, 9, 30, tzinfo=UTC)),
    ("0 0 1,15 * *", T, datetime(2024, 5, 15, 0, 0, tzinfo=UTC)),
    ("0 0 13 * 5", T, datetime(2024, 5, 10, 0, 0, tzinfo=UTC)),  # dom and dow both set: either matches
])
def test_cron_next(schedule: str, after: datetime, expect: datetime) -> None:
    assert parse(schedule).next_after(after) == expect


def test_cron_errors_and_missed_times() -> None:
    for bad in ("* * * *", "61 * * * *", "*/0 * * * *", "x * * * *"):
        with pytest.raises(ScheduleError):
            parse(bad)
    last, missed = most_recent(parse("*/5 * * * *"), datetime(2024, 5, 4, 12, 0, tzinfo=UTC), T)
    assert (last, missed) == (datetime(2024, 5, 4, 12, 5, tzinfo=UTC), 1)
    assert job_name("hello", datetime(2024, 5, 4, 12, 5, tzinfo=UTC).timestamp()) == "hello-28580405"  # 1714824300 s / 60


def job(name: str, completions: int = 3, parallelism: int = 2, backoff: int = 2, policy: str = "Never") -> dict:
    return {"metadata": {"name": name}, "spec": {
        "completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}}}}


async def finish(fake: FakeApiClient, pod: dict, phase: str) -> None:
    pod = await fake.get(api.PODS, pod["metadata"]["name"], "default")
    pod["status"]["phase"] = phase
    await fake.update_status(api.PODS, pod)


async def running(fake: FakeApiClient, prefix: str, n: int) -> list[dict]:
    ps = [p for p in live_pods(fake, prefix) if p["status"].get("podIP") and p["status"]["phase"] == "Running"]
    return ps if len(ps) == n else []


async def test_job_runs_to_completions_with_parallelism() -> None:
    async with fake_cluster(extra={"job-pod-failure-backoff": "0.05"}) as fake:
        await fake.create(JOBS, job("pi"), "default")
        pods = await eventually(lambda: running(fake, "pi-", 2))
        labels = pods[0]["metadata"]["labels"]
        j = await fake.get(JOBS, "pi", "default")
        assert labels["batch.kubernetes.io/job-name"] == "pi" and labels["job-name"] == "pi"
        assert labels["controller-uid"] == j["metadata"]["uid"]
        for p in pods:
            await finish(fake, p, "Succeeded")
        last = await eventually(lambda: running(fake, "pi-", 1))  # 3 completions: only one more runs
        await finish(fake, last[0], "Succeeded")

        async def complete() -> dict | None:
            st = (await fake.get(JOBS, "pi", "default"))["status"]
            return st if any(c["type"] == "Complete" for c in st.get("conditions", [])) else None

        st = await eventually(complete)
        assert st["succeeded"] == 3 and "active" not in st and st["completionTime"]
        assert "Job completed" in events(fake, "job-controller", "Completed")


async def test_job_backoff_limit_exceeded() -> None:
    async with fake_cluster(extra={"job-pod-failure-backoff": "0.05"}) as fake:
        await fake.create(JOBS, job("bad", completions=1, parallelism=1, backoff=2), "default")
        for _ in range(3):  # backoffLimit 2: the third failure ends the Job
            p = await eventually(lambda: running(fake, "bad-", 1))
            await finish(fake, p[0], "Failed")

        async def failed() -> dict | None:
            st = (await fake.get(JOBS, "bad", "default"))["status"]
            c = next((c for c in st.get("conditions", []) if c["type"] == "Failed"), None)
            return st if c else None

        st = await eventually(failed)
        c = next(c for c in st["conditions"] if c["type"] == "Failed")
        assert (c["reason"], c["message"]) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        assert st["failed"] == 3 and len([p for p in fake.objects(api.PODS) if p["metadata"]["name"].startswith("bad-")]) == 3


async def test_cronjob_creates_named_job_and_forbid_skips() -> None:
    fake = FakeApiClient()
    from netkube.controllers.base import Informers
    inf = Informers(fake)
    import asyncio
    tasks = [asyncio.create_task(inf.cronjobs.run()), asyncio.create_task(inf.jobs.run())]
    cj = {"metadata": {"name": "hello"}, "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid",
          "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}}}}
    made = await fake.create(CRONJOBS, cj, "default")
    created = datetime.fromisoformat(made["metadata"]["creationTimestamp"].replace("Z", "+00:00")).timestamp()
    now = [created + 6 * 60]
    ctl = CronJobController(fake, inf, clock=lambda: now[0])
    await eventually(lambda: _cached(inf, "hello"))
    await ctl.sync("default/hello")
    jobs = fake.objects(JOBS, "default")
    assert len(jobs) == 1 and jobs[0]["metadata"]["name"].startswith("hello-")
    sched = int(jobs[0]["metadata"]["name"].split("-")[1]) * 60
    assert created < sched <= now[0] and sched % 300 == 0
    assert events(fake, "cronjob-controller") == [f"Created job {jobs[0]['metadata']['name']}"]
    await eventually(lambda: _cached(inf, "hello", active=True))
    now[0] += 5 * 60
    await ctl.sync("default/hello")
    assert len(fake.objects(JOBS, "default")) == 1
    assert events(fake, "cronjob-controller")[-1] == (
        "Not starting job because prior execution is running and concurrency policy is Forbid")
    for t in tasks:
        t.cancel()


async def _cached(inf: object, name: str, active: bool = False) -> bool:
    cj = inf.cronjobs.get(name, "default")  # type: ignore[attr-defined]
    return cj is not None and (not active or bool((cj.get("status") or {}).get("active")))


def sts(replicas: int = 3, policy: str = "OrderedReady") -> dict:
    return {"metadata": {"name": "web"}, "spec": {
        "replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
        "selector": {"matchLabels": {"app": "nginx"}},
        "volumeClaimTemplates": [{"metadata": {"name": "www"}}],
        "template": {"metadata": {"labels": {"app": "nginx"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}}}


async def test_statefulset_ordered_creation_identity_and_reverse_rolling_update() -> None:
    async with fake_cluster(ready=lambda p: not p["metadata"]["name"].endswith("-1") or _ok[0]) as fake:
        await fake.create(STATEFULSETS, sts(), "default")
        await eventually(lambda: _names(fake, ["web-0", "web-1"]))
        await __import__("asyncio").sleep(0.3)
        assert await _names(fake, ["web-0", "web-1"])  # web-1 is not Ready: web-2 waits
        _ok[0] = True
        p1 = await fake.get(api.PODS, "web-1", "default")
        from netkube.testing.helpers import set_pod_ready
        await set_pod_ready(fake, "web-1", True)
        await eventually(lambda: _names(fake, ["web-0", "web-1", "web-2"]))
        p0 = await fake.get(api.PODS, "web-0", "default")
        assert (p0["spec"]["hostname"], p0["spec"]["subdomain"]) == ("web-0", "nginx")
        assert {"name": "www", "emptyDir": {}} in p0["spec"]["volumes"]
        assert p1["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
        assert any(e["reason"] == "VolumeClaimTemplatesIgnored" for e in fake.objects(api.EVENTS))
        assert events(fake, "statefulset-controller", "SuccessfulCreate") == [
            f"create Pod web-{i} in StatefulSet web successful" for i in range(3)]
        await fake.patch(STATEFULSETS, "web", {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {
            "partition": 1}}, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:2"}]}}}}, "default")

        async def updated() -> bool:
            st = (await fake.get(STATEFULSETS, "web", "default")).get("status", {})
            return st.get("updatedReplicas") == 2 and st.get("readyReplicas") == 3

        await eventually(updated, timeout=8)
        deleted = events(fake, "statefulset-controller", "SuccessfulDelete")
        assert deleted == ["delete Pod web-2 in StatefulSet web successful", "delete Pod web-1 in StatefulSet web successful"]
        assert (await fake.get(api.PODS, "web-0", "default"))["spec"]["containers"][0]["image"] == "nginx:1"
        assert len(fake.objects(CONTROLLERREVISIONS, "default")) == 2


_ok = [False]


async def _names(fake: FakeApiClient, want: list[str]) -> bool:
    return sorted(p["metadata"]["name"] for p in live_pods(fake, "web-")) == want


async def test_daemonset_one_pod_per_node_with_tolerations_and_follows_nodes() -> None:
    async with fake_cluster() as fake:
        ds = {"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"tolerations": [CP_TAINT | {"operator": "Exists"}], "containers": [{"name": "a", "image": "x"}]}}}}
        await fake.create(DAEMONSETS, ds, "default")

        async def spread(n: int) -> bool:
            pods = [p for p in live_pods(fake, "agent-") if p["spec"].get("nodeName")]
            return len(pods) == n and len({p["spec"]["nodeName"] for p in pods}) == n

        await eventually(lambda: spread(3))
        pod = live_pods(fake, "agent-")[0]
        keys = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
        assert ("node.kubernetes.io/unreachable", "NoExecute") in keys
        assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
        await fake.create(api.NODES, node("node4") | {"spec": {"podCIDR": "10.244.3.0/24"}})
        await eventually(lambda: spread(4))
        await fake.delete(api.NODES, "node4")

        async def three_desired() -> bool:
            st = (await fake.get(DAEMONSETS, "agent", "default")).get("status", {})
            return st.get("desiredNumberScheduled") == 3 and st.get("numberReady") == 3

        await eventually(three_desired)


def test_endpoints_publish_statefulset_hostnames() -> None:
    from netkube.controllers.endpoints_render import render_slices, render_subsets
    svc = {"metadata": {"name": "nginx", "namespace": "default"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}
    pod = {"metadata": {"name": "web-0", "namespace": "default", "uid": "u"},
           "spec": {"hostname": "web-0", "subdomain": "nginx", "nodeName": "node2"},
           "status": {"podIP": "10.244.1.5", "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert render_subsets(svc, [pod])[0]["addresses"][0]["hostname"] == "web-0"
    assert render_slices(svc, [pod])[0][1][0]["hostname"] == "web-0"
    other = {**svc, "metadata": {"name": "other", "namespace": "default"}}
    assert "hostname" not in render_subsets(other, [pod])[0]["addresses"][0]
