"""Node loss: condition taints, NoExecute eviction timing, endpoints and rescheduling, on the fake."""

from __future__ import annotations

import time

import pytest

from netkube import client as api
from netkube.api.defaults import default_tolerations
from netkube.controllers.nodelifecycle import settings
from netkube.controllers.taints import (
    NOT_READY_TAINT,
    UNREACHABLE_TAINT,
    condition_taints,
    eviction_time,
    merge_taints,
)
from netkube.testing.cluster import fake_cluster, live_pods
from netkube.testing.helpers import deployment, eventually, service

T0 = "2024-05-01T10:00:00Z"
T0_UNIX = 1714557600.0
UNREACH = {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": T0}


def tol(seconds: int | None, key: str = UNREACHABLE_TAINT) -> dict:
    t = {"key": key, "operator": "Exists", "effect": "NoExecute"}
    return t if seconds is None else {**t, "tolerationSeconds": seconds}


@pytest.mark.parametrize("tolerations,due", [
    ([], T0_UNIX),  # untolerated NoExecute: at once
    ([tol(300), tol(300, NOT_READY_TAINT)], T0_UNIX + 300),  # the DefaultTolerationSeconds pair
    ([tol(300), tol(5)], T0_UNIX + 5),  # the smallest matching tolerationSeconds wins
    ([tol(None)], None),  # tolerated forever
    ([{"operator": "Exists"}], None),  # tolerate everything (as DaemonSet pods often do)
])
def test_eviction_time(tolerations: list, due: float | None) -> None:
    assert eviction_time({"spec": {"tolerations": tolerations}}, [UNREACH]) == due


def test_condition_taints_follow_ready() -> None:
    assert condition_taints("True", T0) == []
    assert [(t["key"], t["effect"]) for t in condition_taints("False", T0)] == [
        (NOT_READY_TAINT, "NoSchedule"), (NOT_READY_TAINT, "NoExecute")]
    user = {"key": "x", "effect": "NoSchedule"}
    old = [user] + condition_taints("Unknown", T0)
    assert merge_taints(old, condition_taints("Unknown", "2030-01-01T00:00:00Z")) == old  # timeAdded kept
    assert merge_taints(old, []) == [user]


def test_default_toleration_seconds_admission() -> None:
    spec: dict = {}
    default_tolerations(spec)
    assert spec["tolerations"] == [tol(300, NOT_READY_TAINT), tol(300)]
    spec = {"tolerations": [tol(5)]}
    default_tolerations(spec)
    assert spec["tolerations"] == [tol(5), tol(300, NOT_READY_TAINT)]


def test_grace_period_from_config_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings({}) == (40.0, 5.0)
    assert settings({"node-monitor-grace-period": "2s"}) == (2.0, 0.25)
    monkeypatch.setenv("NETKUBE_NODE_MONITOR_GRACE_PERIOD", "8")
    assert settings(None)[0] == 8.0


async def test_lost_node_is_tainted_pods_unready_then_evicted_and_replaced() -> None:
    extra = {"node-monitor-grace-period": "1", "node-monitor-period": "0.1"}
    async with fake_cluster(extra=extra) as fake:
        d = deployment("web", 4, ports=[{"containerPort": 80}])
        d["spec"]["template"]["spec"]["tolerations"] = [tol(2)]
        await fake.create(api.DEPLOYMENTS, d, "default")
        await fake.create(api.SERVICES, service("web", {"app": "web"}, [{"port": 80}]), "default")

        async def ready_eps() -> bool:
            ep = await fake.get(api.ENDPOINTS, "web", "default")
            return sum(len(s.get("addresses", [])) for s in ep.get("subsets", [])) == 4

        await eventually(ready_eps)
        on3 = {p["metadata"]["name"] for p in live_pods(fake, "web-") if p["spec"]["nodeName"] == "node3"}
        assert len(on3) == 2
        fake.kubelet.dead.add("node3")  # type: ignore[attr-defined]
        lost = time.time()

        async def unreachable() -> bool:
            n = await fake.get(api.NODES, "node3")
            return {(t["key"], t["effect"]) for t in n["spec"].get("taints") or []} == {
                (UNREACHABLE_TAINT, "NoSchedule"), (UNREACHABLE_TAINT, "NoExecute")}

        await eventually(unreachable, timeout=5)

        async def moved_to_not_ready() -> bool:
            ep = await fake.get(api.ENDPOINTS, "web", "default")
            names = {a["targetRef"]["name"] for s in ep.get("subsets", []) for a in s.get("notReadyAddresses", [])}
            return names == on3

        await eventually(moved_to_not_ready)

        async def evicted() -> bool:
            pods = {p["metadata"]["name"]: p for p in fake.objects(api.PODS, "default")}
            return all(pods[n]["metadata"].get("deletionTimestamp") for n in on3)

        await eventually(evicted, timeout=6)
        assert time.time() - lost >= 2.0  # not before tolerationSeconds (2 s) after the taint
        msgs = [e["message"] for e in fake.objects(api.EVENTS) if e["reason"] == "TaintManagerEviction"]
        assert sorted(msgs) == sorted(f"Marking for deletion Pod default/{n}" for n in on3)

        async def replaced() -> bool:
            live = live_pods(fake, "web-")
            return len(live) == 4 and all(p["spec"].get("nodeName") == "node2" for p in live) and await ready_eps()

        await eventually(replaced, timeout=5)
