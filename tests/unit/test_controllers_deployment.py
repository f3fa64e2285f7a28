"""Deployment rollouts end to end on FakeApiClient: surge/unavailable sequencing, stalls, undo, pause."""

from __future__ import annotations

import asyncio

import pytest

from netkube import client as api
from netkube.api.tables.workloads import DEPLOYMENTS as DEPLOY_TABLE
from netkube.controllers.hashing import compute_hash
from netkube.controllers.rollout import HASH_LABEL, REVISION, REVISION_HISTORY, old_scale_down_plan
from netkube.testing import FakeApiClient
from netkube.testing.cluster import events, fake_cluster, live_pods
from netkube.testing.helpers import deployment, eventually


def never_ready_bad(pod: dict) -> bool:
    return not pod["spec"]["containers"][0]["image"].endswith(":bad")


async def set_image(fake: FakeApiClient, name: str, image: str) -> str:
    d = await fake.get(api.DEPLOYMENTS, name, "default")
    d["spec"]["template"]["spec"]["containers"][0]["image"] = image
    d = await fake.update(api.DEPLOYMENTS, d)
    return f"{name}-{compute_hash(d['spec']['template'])}"


async def rs_sizes(fake: FakeApiClient, prefix: str) -> dict[str, int]:
    return {r["metadata"]["name"]: r["spec"]["replicas"] for r in fake.objects(api.REPLICASETS, "default")
            if r["metadata"]["name"].startswith(prefix)}


async def deploy_row(fake: FakeApiClient, name: str) -> list[object]:
    return DEPLOY_TABLE.cells(await fake.get(api.DEPLOYMENTS, name, "default"))[:4]


@pytest.mark.parametrize("old,new,expect", [
    # 10 replicas 25%/25% (surge 3, unavailable 2), new RS at 3 and not available: 2 old may go.
    ([(10, 10)], (3, 0), {"o0": 8}),
    ([(8, 8)], (5, 0), {}),  # the stall: 13 = 10 + 3, and 8 = minAvailable
    ([(8, 8)], (5, 5), {"o0": 3}),
    ([(2, 0), (8, 8)], (3, 0), {"o0": 0}),  # the budget of 2 goes to unhealthy old replicas first
])
def test_old_scale_down_plan(old: list[tuple[int, int]], new: tuple[int, int], expect: dict[str, int]) -> None:
    d = {"metadata": {}, "spec": {"replicas": 10}}
    rss = [{"metadata": {"name": f"o{i}", "creationTimestamp": f"2024-01-0{i + 1}T00:00:00Z"},
            "spec": {"replicas": s}, "status": {"availableReplicas": a}} for i, (s, a) in enumerate(old)]
    new_rs = {"metadata": {"name": "n"}, "spec": {"replicas": new[0]}, "status": {"availableReplicas": new[1]}}
    assert old_scale_down_plan(d, rss, new_rs) == expect


async def test_stalled_rollout_holds_8_old_and_5_new_then_undo_restores() -> None:
    async with fake_cluster(ready=never_ready_bad) as fake:
        d = await fake.create(api.DEPLOYMENTS, deployment("web", 10), "default")
        good_rs = f"web-{compute_hash(d['spec']['template'])}"
        await eventually(lambda: _row_is(fake, "web", ["web", "10/10", 10, 10]), timeout=10)
        bad_rs = await set_image(fake, "web", "web:bad")
        await eventually(lambda: _sizes_are(fake, {good_rs: 8, bad_rs: 5}), timeout=10)
        await eventually(lambda: _row_is(fake, "web", ["web", "8/10", 5, 8]))
        await asyncio.sleep(0.3)  # stable: nothing more moves while the new pods stay unready
        assert await rs_sizes(fake, "web-") == {good_rs: 8, bad_rs: 5}
        st = (await fake.get(api.DEPLOYMENTS, "web", "default"))["status"]
        assert (st["replicas"], st["updatedReplicas"], st["unavailableReplicas"]) == (13, 5, 5)
        conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
        assert conds == {"Available": ("True", "MinimumReplicasAvailable"),
                         "Progressing": ("True", "ReplicaSetUpdated")}
        assert events(fake, "deployment-controller", "ScalingReplicaSet")[-3:] == [
            f"Scaled up replica set {bad_rs} to 3", f"Scaled down replica set {good_rs} to 8 from 10",
            f"Scaled up replica set {bad_rs} to 5 from 3"]
        # kubectl rollout undo: the template of revision 1 is patched back (hash label removed).
        old = await fake.get(api.REPLICASETS, good_rs, "default")
        cur = await fake.get(api.DEPLOYMENTS, "web", "default")
        cur["spec"]["template"] = old["spec"]["template"]
        del cur["spec"]["template"]["metadata"]["labels"][HASH_LABEL]
        await fake.update(api.DEPLOYMENTS, cur)
        await eventually(lambda: _sizes_are(fake, {good_rs: 10, bad_rs: 0}), timeout=10)
        await eventually(lambda: _row_is(fake, "web", ["web", "10/10", 10, 10]))
        back = await fake.get(api.REPLICASETS, good_rs, "default")
        assert back["metadata"]["annotations"][REVISION] == "3"
        assert back["metadata"]["annotations"][REVISION_HISTORY] == "1"
        dep = await fake.get(api.DEPLOYMENTS, "web", "default")
        assert dep["metadata"]["annotations"][REVISION] == "3"


async def _row_is(fake: FakeApiClient, name: str, want: list[object]) -> bool:
    return await deploy_row(fake, name) == want


async def _sizes_are(fake: FakeApiClient, want: dict[str, int]) -> bool:
    return await rs_sizes(fake, "web-") == want


async def test_zero_downtime_rollout_alternates_one_up_one_down() -> None:
    async with fake_cluster() as fake:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        d = await fake.create(api.DEPLOYMENTS, deployment("web", 10, strategy=strategy), "default")
        old_rs = f"web-{compute_hash(d['spec']['template'])}"
        await eventually(lambda: _row_is(fake, "web", ["web", "10/10", 10, 10]), timeout=10)
        lowest = [10]
        monitor = asyncio.create_task(_watch_ready(fake, lowest))
        new_rs = await set_image(fake, "web", "web:2")
        await eventually(lambda: _sizes_are(fake, {old_rs: 0, new_rs: 10}), timeout=15)
        await eventually(lambda: _row_is(fake, "web", ["web", "10/10", 10, 10]))
        monitor.cancel()
        assert lowest[0] >= 10  # never fewer than 10 ready pods serving
        want = []
        for i in range(1, 11):
            want.append(f"Scaled up replica set {new_rs} to {i}" + (f" from {i - 1}" if i > 1 else ""))
            want.append(f"Scaled down replica set {old_rs} to {10 - i} from {11 - i}")
        assert events(fake, "deployment-controller", "ScalingReplicaSet")[1:] == want
        st = (await fake.get(api.DEPLOYMENTS, "web", "default"))["status"]
        prog = next(c for c in st["conditions"] if c["type"] == "Progressing")
        assert prog["reason"] == "NewReplicaSetAvailable"
        assert prog["message"] == f'ReplicaSet "{new_rs}" has successfully progressed.'


async def _watch_ready(fake: FakeApiClient, lowest: list[int]) -> None:
    ready: dict[str, bool] = {}
    async for etype, pod in fake.watch(api.PODS, "default", resource_version=str(fake.rv)):
        name = pod["metadata"]["name"]
        ok = etype != "DELETED" and not pod["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        ready[name] = ok
        if len(ready) >= 10:
            lowest[0] = min(lowest[0], sum(ready.values()) + sum(1 for p in live_pods(fake, "web-")
                                                                   if p["metadata"]["name"] not in ready))


async def test_progress_deadline_exceeded_and_history_limit_and_change_cause() -> None:
    async with fake_cluster(ready=never_ready_bad) as fake:
        d = deployment("web", 2)
        d["spec"].update({"progressDeadlineSeconds": 1, "revisionHistoryLimit": 1})
        d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first"}
        await fake.create(api.DEPLOYMENTS, d, "default")
        await eventually(lambda: _row_is(fake, "web", ["web", "2/2", 2, 2]))
        await set_image(fake, "web", "web:2")
        await eventually(lambda: _row_is(fake, "web", ["web", "2/2", 2, 2]))
        await fake.patch(api.DEPLOYMENTS, "web", {"metadata": {"annotations": {"kubernetes.io/change-cause": "v3"}}},
                         "default")
        new_rs = await set_image(fake, "web", "web:3")
        await eventually(lambda: _row_is(fake, "web", ["web", "2/2", 2, 2]))

        async def pruned() -> bool:  # revisionHistoryLimit 1: revision 1 is deleted
            return len(await rs_sizes(fake, "web-")) == 2

        await eventually(pruned)
        rs = await fake.get(api.REPLICASETS, new_rs, "default")
        assert rs["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v3"
        bad_rs = await set_image(fake, "web", "web:bad")

        async def timed_out() -> dict | None:
            st = (await fake.get(api.DEPLOYMENTS, "web", "default"))["status"]
            c = next(c for c in st["conditions"] if c["type"] == "Progressing")
            return c if c["reason"] == "ProgressDeadlineExceeded" else None

        c = await eventually(timed_out, timeout=6)
        assert (c["status"], c["message"]) == ("False", f'ReplicaSet "{bad_rs}" has timed out progressing.')


async def test_pause_holds_template_changes_until_resume() -> None:
    async with fake_cluster() as fake:
        await fake.create(api.DEPLOYMENTS, deployment("web", 2), "default")
        await eventually(lambda: _row_is(fake, "web", ["web", "2/2", 2, 2]))
        await fake.patch(api.DEPLOYMENTS, "web", {"spec": {"paused": True}}, "default")
        new_rs = await set_image(fake, "web", "web:2")

        async def paused() -> bool:
            st = (await fake.get(api.DEPLOYMENTS, "web", "default"))["status"]
            return any(c["type"] == "Progressing" and c["status"] == "Unknown" and c["reason"] == "DeploymentPaused"
                       and c["message"] == "Deployment is paused" for c in st["conditions"])

        await eventually(paused)
        await fake.patch(api.DEPLOYMENTS, "web", {"spec": {"replicas": 3}}, "default")
        await eventually(lambda: _row_is(fake, "web", ["web", "3/3", 0, 3]))
        assert new_rs not in await rs_sizes(fake, "web-")  # paused: no new ReplicaSet
        await fake.patch(api.DEPLOYMENTS, "web", {"spec": {"paused": False}}, "default")
        await eventually(lambda: _row_is(fake, "web", ["web", "3/3", 3, 3]), timeout=10)
        assert (await rs_sizes(fake, "web-"))[new_rs] == 3
