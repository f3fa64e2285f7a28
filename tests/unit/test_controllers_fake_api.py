"""FakeApiClient behaves like the apiserver for what controllers, agents and Informer rely on."""

from __future__ import annotations

import asyncio

import pytest

from netkube import client as api
from netkube.client import ApiError, Informer
from netkube.testing import FakeApiClient
from netkube.testing.fake_api import NAME_ALPHABET
from netkube.testing.helpers import eventually, node


def pod(name: str, labels: dict[str, str] | None = None, node_name: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "x"}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


async def test_create_fills_metadata_and_rejects_duplicates() -> None:
    fake = FakeApiClient()
    made = await fake.create(api.PODS, {"metadata": {"generateName": "web-"}, "spec": {}}, "default")
    md = made["metadata"]
    assert md["name"].startswith("web-") and len(md["name"]) == 9
    assert all(c in NAME_ALPHABET for c in md["name"][4:])
    assert md["uid"] and md["creationTimestamp"].endswith("Z") and md["resourceVersion"] == "1"
    assert made["status"]["phase"] == "Pending" and made["spec"]["schedulerName"] == "default-scheduler"
    await fake.create(api.PODS, pod("a"), "default")
    with pytest.raises(ApiError) as e:
        await fake.create(api.PODS, pod("a"), "default")
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"
    with pytest.raises(ApiError) as e2:
        await fake.get(api.PODS, "missing", "default")
    assert e2.value.code == 404 and e2.value.status["message"] == 'pods "missing" not found'


async def test_list_with_label_and_field_selectors() -> None:
    fake = FakeApiClient()
    await fake.create(api.PODS, pod("a", {"app": "web", "tier": "fe"}, "node1"), "default")
    await fake.create(api.PODS, pod("b", {"app": "web"}, "node2"), "default")
    await fake.create(api.PODS, pod("c", {"app": "db"}), "other")
    names = lambda lst: sorted(o["metadata"]["name"] for o in lst["items"])  # noqa: E731
    assert names(await fake.list(api.PODS, label_selector="app=web")) == ["a", "b"]
    assert names(await fake.list(api.PODS, label_selector="app in (web,db),tier!=fe")) == ["b", "c"]
    assert names(await fake.list(api.PODS, label_selector="!tier")) == ["b", "c"]
    assert names(await fake.list(api.PODS, field_selector="spec.nodeName=node1")) == ["a"]
    assert names(await fake.list(api.PODS, "other")) == ["c"]
    assert names(await fake.list(api.PODS, field_selector="metadata.name=b")) == ["b"]
    assert (await fake.list(api.PODS))["metadata"]["resourceVersion"] == "3"


async def test_update_conflict_status_split_and_generation() -> None:
    fake = FakeApiClient()
    d = await fake.create(api.DEPLOYMENTS, {"metadata": {"name": "d"}, "spec": {"replicas": 1}}, "default")
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 2
    d["status"] = {"replicas": 99}  # ignored by the main resource
    d2 = await fake.update(api.DEPLOYMENTS, d)
    assert d2["metadata"]["generation"] == 2 and d2.get("status") == {}
    with pytest.raises(ApiError) as e:
        await fake.update(api.DEPLOYMENTS, d)  # stale resourceVersion
    assert e.value.code == 409 and e.value.reason == "Conflict"
    d2["status"] = {"replicas": 2}
    d2["spec"]["replicas"] = 7  # ignored by /status
    d3 = await fake.update_status(api.DEPLOYMENTS, d2)
    assert d3["status"] == {"replicas": 2} and d3["spec"]["replicas"] == 2 and d3["metadata"]["generation"] == 2


async def test_merge_patch_and_status_patch() -> None:
    fake = FakeApiClient()
    await fake.create(api.NODES, node("node1", labels={"a": "1"}))
    n = await fake.patch(api.NODES, "node1", {"metadata": {"labels": {"a": None, "b": "2"}},
                                                "spec": {"podCIDR": "10.244.0.0/24"}})
    assert n["metadata"]["labels"] == {"kubernetes.io/hostname": "node1", "b": "2"}
    assert n["spec"]["podCIDR"] == "10.244.0.0/24"
    n = await fake.patch(api.NODES, "node1", {"status": {"conditions": []}}, sub="status")
    assert n["status"]["conditions"] == [] and n["spec"]["podCIDR"] == "10.244.0.0/24"


async def test_graceful_pod_delete_and_bind() -> None:
    fake = FakeApiClient()
    await fake.create(api.PODS, pod("a"), "default")
    await fake.bind({"metadata": {"name": "a", "namespace": "default"}}, "node2")
    bound = await fake.get(api.PODS, "a", "default")
    assert bound["spec"]["nodeName"] == "node2"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in bound["status"]["conditions"])
    with pytest.raises(ApiError) as e:
        await fake.bind(bound, "node3")
    assert e.value.code == 409
    await fake.delete(api.PODS, "a", "default")
    terminating = await fake.get(api.PODS, "a", "default")
    assert terminating["metadata"]["deletionTimestamp"] and terminating["metadata"]["deletionGracePeriodSeconds"] == 30
    await fake.delete(api.PODS, "a", "default", grace_period=0)
    with pytest.raises(ApiError):
        await fake.get(api.PODS, "a", "default")
    await fake.create(api.PODS, pod("unbound"), "default")
    await fake.delete(api.PODS, "unbound", "default")  # never scheduled: gone at once, as upstream
    assert fake.objects(api.PODS) == []


async def test_service_allocation() -> None:
    fake = FakeApiClient()
    s = await fake.create(api.SERVICES, {"metadata": {"name": "s"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80}]}}, "default")
    assert s["spec"]["clusterIP"] == "10.96.0.10" and s["spec"]["ports"][0]["nodePort"] == 30000
    k = await fake.create(api.SERVICES, {"metadata": {"name": "k"}, "spec": {"clusterIP": "10.96.0.1"}}, "default")
    assert k["spec"]["clusterIPs"] == ["10.96.0.1"]


async def test_watch_replays_from_resource_version_and_selector_transitions() -> None:
    fake = FakeApiClient()
    await fake.create(api.PODS, pod("a", {"app": "web"}), "default")
    rv = (await fake.list(api.PODS))["metadata"]["resourceVersion"]
    await fake.create(api.PODS, pod("b", {"app": "web"}), "default")
    got: list[tuple[str, str]] = []

    async def consume() -> None:
        async for etype, obj in fake.watch(api.PODS, resource_version=rv, label_selector="app=web"):
            got.append((etype, obj["metadata"]["name"]))

    task = asyncio.create_task(consume())
    await eventually(lambda: _ready(got, 1))
    await fake.patch(api.PODS, "a", {"metadata": {"labels": {"app": "db"}}}, "default")  # leaves the selector
    await fake.patch(api.PODS, "a", {"metadata": {"labels": {"app": "web"}}}, "default")  # enters again
    await eventually(lambda: _ready(got, 3))
    task.cancel()
    assert got == [("ADDED", "b"), ("DELETED", "a"), ("ADDED", "a")]


async def _ready(got: list, n: int) -> bool:
    return len(got) >= n


async def test_informer_runs_unchanged_against_the_fake() -> None:
    fake = FakeApiClient()
    await fake.create(api.NODES, node("node1"))
    inf = Informer(fake, api.NODES)  # type: ignore[arg-type]
    seen: list[tuple[str, str]] = []
    inf.add_handler(lambda t, o, old: seen.append((t, o["metadata"]["name"])))
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.synced.wait(), 2)
    await fake.create(api.NODES, node("node2"))
    await fake.delete(api.NODES, "node1")
    await eventually(lambda: _ready(seen, 3))
    task.cancel()
    assert seen == [("ADDED", "node1"), ("ADDED", "node2"), ("DELETED", "node1")]
    assert sorted(inf.cache) == ["node2"]


async def test_raw_request_routes_to_verbs() -> None:
    fake = FakeApiClient()
    await fake.request("POST", "/apis/apps/v1/namespaces/default/deployments",
                       {"metadata": {"name": "d"}, "spec": {"replicas": 1}})
    got = await fake.request("GET", "/apis/apps/v1/namespaces/default/deployments/d")
    assert got["kind"] == "Deployment" and got["metadata"]["namespace"] == "default"
    await fake.request("PATCH", "/apis/apps/v1/namespaces/default/deployments/d", {"spec": {"replicas": 4}},
                       content_type="application/merge-patch+json")
    assert (await fake.get(api.DEPLOYMENTS, "d", "default"))["spec"]["replicas"] == 4
    with pytest.raises(ApiError) as e:
        await fake.request("GET", "/apis/nope/v1/things")
    assert e.value.code == 404
