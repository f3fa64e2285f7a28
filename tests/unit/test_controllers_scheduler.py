"""Scheduler filters, scores and FailedScheduling texts, table-driven, plus one flow on the fake."""

from __future__ import annotations

import pytest

from netkube import client as api
from netkube.scheduler.filters import _expr_matches, fit_error_message, node_fit_reasons, preemption_verdict
from netkube.scheduler.resources import insufficient, quantity
from netkube.scheduler.scoring import rank_nodes
from netkube.testing.cluster import CP_TAINT, fake_cluster
from netkube.testing.helpers import eventually, node


def sized(name: str, cpu: str = "2", memory: str = "2Gi", pods: str = "110", **kw: object) -> dict:
    n = node(name, **kw)  # type: ignore[arg-type]
    n["status"]["allocatable"] = {"cpu": cpu, "memory": memory, "pods": pods}
    n["metadata"]["labels"]["zone"] = {"n1": "a", "n2": "a", "n3": "b"}.get(name, "c")
    return n


def pod(name: str = "p", cpu: str | None = None, memory: str | None = None, labels: dict | None = None,
        affinity: dict | None = None, ns: str = "default") -> dict:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": req}}]}
    if affinity:
        spec["affinity"] = affinity
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": spec}


@pytest.mark.parametrize("text,value", [("500m", "0.5"), ("2", "2"), ("128Mi", str(128 * 2**20)), ("1G", "1e9"),
                                        ("0.25", "0.25"), ("1k", "1000")])
def test_quantity(text: str, value: str) -> None:
    assert quantity(text) == quantity(value)


@pytest.mark.parametrize("op,values,labels,ok", [
    ("In", ["a"], {"k": "a"}, True), ("In", ["a"], {}, False), ("NotIn", ["a"], {"k": "b"}, True),
    ("NotIn", ["a"], {}, True), ("Exists", [], {"k": ""}, True), ("DoesNotExist", [], {"k": "x"}, False),
    ("Gt", ["4"], {"k": "5"}, True), ("Gt", ["5"], {"k": "5"}, False), ("Lt", ["5"], {"k": "4"}, True),
    ("Lt", ["5"], {"k": "x"}, False),
])
def test_node_selector_operators(op: str, values: list, labels: dict, ok: bool) -> None:
    assert _expr_matches({"key": "k", "operator": op, "values": values}, labels) is ok


def test_resources_count_requests_of_pods_already_there() -> None:
    n = sized("n1", cpu="1", memory="1Gi", pods="2")
    placed = [pod("a", cpu="600m", memory="512Mi")]
    assert insufficient(pod(cpu="300m"), n, placed) == []
    assert insufficient(pod(cpu="500m", memory="600Mi"), n, placed) == ["Insufficient cpu", "Insufficient memory"]
    assert insufficient(pod(), n, placed + [pod("b")]) == ["Too many pods"]


def test_failed_scheduling_message_with_taint_and_cpu() -> None:
    nodes = [sized("n1", taints=[CP_TAINT]), sized("n2", cpu="1"), sized("n3", cpu="1")]
    p = pod(cpu="1500m")
    reasons: dict[str, int] = {}
    verdicts: dict[str, int] = {}
    for n in nodes:
        why = node_fit_reasons(p, n, [])
        for r in why:
            reasons[r] = reasons.get(r, 0) + 1
        verdicts[preemption_verdict(why)] = verdicts.get(preemption_verdict(why), 0) + 1
    assert fit_error_message(3, reasons, verdicts) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.")


ANTI = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}
AFF = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]}}


def test_pod_affinity_and_anti_affinity_by_topology() -> None:
    n1, n2, n3 = sized("n1"), sized("n2"), sized("n3")
    db_on_n1 = [(n1, pod("db-0", labels={"app": "db"}, affinity=ANTI))]
    new_db = pod("db-1", labels={"app": "db"}, affinity=ANTI)
    # zone a holds n1 and n2: both refuse a second db; zone b is free.
    assert node_fit_reasons(new_db, n2, db_on_n1) == ["node(s) didn't satisfy existing pods anti-affinity rules"]
    assert node_fit_reasons(new_db, n3, db_on_n1) == []
    plain_db = pod("db-2", labels={"app": "db"})  # no rule of its own, but db-0's rule still applies
    assert node_fit_reasons(plain_db, n1, db_on_n1) == ["node(s) didn't satisfy existing pods anti-affinity rules"]
    anti_only_new = pod("x", labels={"app": "web"}, affinity={"podAntiAffinity": ANTI["podAntiAffinity"]})
    assert node_fit_reasons(anti_only_new, n2, [(n1, pod("db-0", labels={"app": "db"}))]) == [
        "node(s) didn't match pod anti-affinity rules"]
    web = pod("web", labels={"app": "web"}, affinity=AFF)
    cache = [(n3, pod("cache", labels={"app": "cache"}))]
    assert node_fit_reasons(web, n1, cache) == ["node(s) didn't match pod affinity rules"]
    assert node_fit_reasons(web, n3, cache) == []
    assert preemption_verdict(["node(s) didn't match pod affinity rules"]) == "Preemption is not helpful for scheduling"


def test_scoring_prefers_tolerated_nodes_preferred_affinity_and_free_capacity() -> None:
    soft = {"key": "dedicated", "value": "x", "effect": "PreferNoSchedule"}
    nodes = {"n1": sized("n1", taints=[soft]), "n2": sized("n2"), "n3": sized("n3")}
    assert rank_nodes(pod(), ["n1", "n2"], [], nodes)[0] == "n2"
    prefer_b = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}
    assert rank_nodes(pod(affinity=prefer_b), ["n2", "n3"], [], nodes)[0] == "n3"
    busy = [("n2", pod("a", cpu="1500m"))]
    assert rank_nodes(pod(cpu="100m"), ["n2", "n3"], busy, nodes)[0] == "n3"


async def test_unschedulable_pod_gets_event_then_fits_after_uncordon() -> None:
    nodes = [sized("node1", cpu="1", taints=[CP_TAINT]), sized("node2", cpu="1", unschedulable=True)]
    async with fake_cluster(nodes=nodes) as fake:
        await fake.create(api.PODS, pod("big", cpu="500m"), "default")
        msg = ("0/2 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
               "1 node(s) were unschedulable. preemption: 0/2 nodes are available: "
               "2 Preemption is not helpful for scheduling.")

        async def failed() -> bool:
            return any(e["reason"] == "FailedScheduling" and e["message"] == msg for e in fake.objects(api.EVENTS))

        await eventually(failed)
        await fake.patch(api.NODES, "node2", {"spec": {"unschedulable": None}})

        async def bound() -> str | None:
            return (await fake.get(api.PODS, "big", "default"))["spec"].get("nodeName")

        assert await eventually(bound) == "node2"
        await fake.create(api.PODS, pod("second", cpu="600m"), "default")
        msg2 = ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
                "{node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: "
                "1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.")

        async def failed2() -> bool:
            return any(e["message"] == msg2 for e in fake.objects(api.EVENTS))

        await eventually(failed2)
