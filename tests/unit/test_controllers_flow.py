"""Controllers + scheduler end to end on FakeApiClient, with a fake kubelet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from netkube import client as api
from netkube.config import ClusterConfig
from netkube.controllers import run_controllers
from netkube.controllers.hashing import ALPHANUMS, compute_hash
from netkube.scheduler import run_scheduler
from netkube.testing import FakeApiClient
from netkube.testing.helpers import FakeKubelet, deployment, eventually, node, service, set_pod_ready

CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


@pytest.fixture
async def cluster() -> AsyncIterator[FakeApiClient]:
    fake = FakeApiClient()
    for n in ("node1", "node2", "node3"):
        await fake.create(api.NODES, node(n, taints=[CP_TAINT] if n == "node1" else None))
    cfg = ClusterConfig()
    tasks = [asyncio.create_task(run_controllers(fake, cfg)),  # type: ignore[arg-type]
             asyncio.create_task(run_scheduler(fake, cfg)),  # type: ignore[arg-type]
             asyncio.create_task(FakeKubelet(fake).run())]
    yield fake
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def pods_of(fake: FakeApiClient, prefix: str) -> list[dict]:
    return [p for p in fake.objects(api.PODS, "default") if p["metadata"]["name"].startswith(prefix)]


def events(fake: FakeApiClient, source: str) -> list[str]:
    return [e["message"] for e in fake.objects(api.EVENTS) if e["source"]["component"] == source]


async def test_deployment_creates_replicaset_and_pods_then_scales(cluster: FakeApiClient) -> None:
    fake = cluster
    d = await fake.create(api.DEPLOYMENTS, deployment("web", 3), "default")
    h = compute_hash(d["spec"]["template"])
    rs_name = f"web-{h}"

    async def three_ready() -> bool:
        ps = pods_of(fake, rs_name)
        return len(ps) == 3 and all(p["status"].get("podIP") for p in ps)

    await eventually(three_ready)
    rs = await fake.get(api.REPLICASETS, rs_name, "default")
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == h
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"  # 25% of 3 rounds up
    ref = rs["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
        "Deployment", "web", d["metadata"]["uid"], True, True)
    for p in pods_of(fake, rs_name):
        suffix = p["metadata"]["name"][len(rs_name) + 1:]
        assert len(suffix) == 5 and set(suffix) <= set(ALPHANUMS)
        assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert p["spec"]["nodeName"] in ("node2", "node3")  # node1 is tainted
    # 3 replicas over 2 schedulable nodes split 2/1.
    per_node = sorted([p["spec"]["nodeName"] for p in pods_of(fake, rs_name)].count(n) for n in ("node2", "node3"))
    assert per_node == [1, 2]

    async def status_ok() -> dict | None:
        st = (await fake.get(api.DEPLOYMENTS, "web", "default")).get("status", {})
        conds = {c["type"]: c["reason"] for c in st.get("conditions", [])}
        return st if st.get("availableReplicas") == 3 and conds.get("Progressing") == "NewReplicaSetAvailable" else None

    st = await eventually(status_ok)
    assert st["replicas"] == 3 and st["updatedReplicas"] == 3 and st["readyReplicas"] == 3
    assert st["observedGeneration"] == 1 and "unavailableReplicas" not in st
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Available"] == "MinimumReplicasAvailable"
    assert f"Scaled up replica set {rs_name} to 3" in events(fake, "deployment-controller")
    assert sum(m.startswith(f"Created pod: {rs_name}-") for m in events(fake, "replicaset-controller")) == 3

    # Scale to 5, then back to 1: the two newest pods (not yet ready) go first.
    await fake.patch(api.DEPLOYMENTS, "web", {"spec": {"replicas": 5}}, "default")
    await eventually(lambda: _count(fake, rs_name, 5))
    await fake.patch(api.DEPLOYMENTS, "web", {"spec": {"replicas": 1}}, "default")

    async def one_left() -> bool:
        return len([p for p in pods_of(fake, rs_name) if not p["metadata"].get("deletionTimestamp")]) == 1

    await eventually(one_left)
    assert f"Scaled up replica set {rs_name} to 5 from 3" in events(fake, "deployment-controller")
    assert f"Scaled down replica set {rs_name} to 1 from 5" in events(fake, "deployment-controller")
    assert sum(m.startswith("Deleted pod: ") for m in events(fake, "replicaset-controller")) == 4


async def _count(fake: FakeApiClient, prefix: str, n: int) -> bool:
    return len([p for p in pods_of(fake, prefix) if p["status"].get("podIP")]) == n


async def test_scale_down_prefers_unready_and_unscheduled_pods(cluster: FakeApiClient) -> None:
    fake = cluster
    await fake.create(api.REPLICASETS, {
        "metadata": {"name": "rs"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}},
                                            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}}, "default")
    await eventually(lambda: _count(fake, "rs-", 3))
    keep = sorted(p["metadata"]["name"] for p in pods_of(fake, "rs-"))[1]
    for p in pods_of(fake, "rs-"):
        if p["metadata"]["name"] != keep:
            await set_pod_ready(fake, p["metadata"]["name"], False)
    await fake.patch(api.REPLICASETS, "rs", {"spec": {"replicas": 1}}, "default")

    async def survivors() -> list[str]:
        live = [p["metadata"]["name"] for p in pods_of(fake, "rs-") if not p["metadata"].get("deletionTimestamp")]
        return live if len(live) == 1 else []

    assert await eventually(survivors) == [keep]
    rs = await eventually(lambda: _rs_status(fake, "rs", 1))
    assert rs["status"]["readyReplicas"] == 1 and rs["status"]["fullyLabeledReplicas"] == 1


async def _rs_status(fake: FakeApiClient, name: str, n: int) -> dict | None:
    rs = await fake.get(api.REPLICASETS, name, "default")
    return rs if rs.get("status", {}).get("replicas") == n else None


async def test_endpoints_follow_readiness_with_named_target_port(cluster: FakeApiClient) -> None:
    fake = cluster
    await fake.create(api.DEPLOYMENTS, deployment("web", 2, ports=[{"name": "http", "containerPort": 8080}]), "default")
    await fake.create(api.SERVICES, service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"}]),
                      "default")

    async def two_ready() -> dict | None:
        ep = await fake.get(api.ENDPOINTS, "web", "default")
        subs = ep.get("subsets") or []
        return ep if len(subs) == 1 and len(subs[0].get("addresses", [])) == 2 else None

    ep = await eventually(two_ready)
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    addr = ep["subsets"][0]["addresses"][0]
    assert addr["targetRef"]["kind"] == "Pod" and addr["nodeName"] in ("node2", "node3")
    slices = [s for s in fake.objects(api.ENDPOINTSLICES, "default")
              if s["metadata"]["labels"].get("kubernetes.io/service-name") == "web"]
    assert len(slices) == 1
    sl = slices[0]
    assert sl["metadata"]["name"].startswith("web-") and len(sl["metadata"]["name"]) == 9
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert sl["addressType"] == "IPv4" and sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    # Both carry the trigger time kube-proxy reports its programming latency from.
    for obj in (ep, sl):
        assert obj["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"].endswith("Z")

    # One pod turns unready: it moves to notReadyAddresses within a second.
    victim = sorted(ep["subsets"][0]["addresses"], key=lambda a: a["ip"])[0]
    await set_pod_ready(fake, victim["targetRef"]["name"], False)

    async def moved() -> bool:
        subs = (await fake.get(api.ENDPOINTS, "web", "default"))["subsets"]
        return [a["ip"] for a in subs[0].get("notReadyAddresses", [])] == [victim["ip"]]

    await eventually(moved, timeout=1.0)
    writes_before = len([c for c in fake.calls if c[1] in ("endpoints", "endpointslices")])
    # A pod status change that does not matter to endpoints causes no endpoint writes.
    await fake.patch(api.PODS, victim["targetRef"]["name"], {"metadata": {"annotations": {"x": "y"}}}, "default")
    await asyncio.sleep(0.2)
    assert len([c for c in fake.calls if c[1] in ("endpoints", "endpointslices")]) == writes_before

    # A graceful delete: terminating in the slice at once (kubelet here finishes it right after).
    fake.graceful_pod_delete = True
    other = sorted(ep["subsets"][0]["addresses"], key=lambda a: a["ip"])[1]
    await fake.delete(api.PODS, other["targetRef"]["name"], "default")

    async def gone() -> bool:
        subs = (await fake.get(api.ENDPOINTS, "web", "default")).get("subsets") or []
        return all(a["ip"] != other["ip"] for s in subs for a in s.get("addresses", []))

    await eventually(gone, timeout=1.0)


async def test_selectorless_service_is_left_alone(cluster: FakeApiClient) -> None:
    fake = cluster
    await fake.create(api.SERVICES, service("ext", None, [{"port": 80}]), "default")
    await asyncio.sleep(0.3)
    assert [e["metadata"]["name"] for e in fake.objects(api.ENDPOINTS, "default")] == ["kubernetes"]


async def test_gc_removes_replicasets_and_pods_after_deployment_delete(cluster: FakeApiClient) -> None:
    fake = cluster
    await fake.create(api.DEPLOYMENTS, deployment("gcme", 2), "default")
    await eventually(lambda: _count(fake, "gcme-", 2))
    await fake.delete(api.DEPLOYMENTS, "gcme", "default")

    async def all_gone() -> bool:
        return not fake.objects(api.REPLICASETS) and not pods_of(fake, "gcme-")

    await eventually(all_gone)


async def test_node_ipam_and_bootstrap(cluster: FakeApiClient) -> None:
    fake = cluster

    async def cidrs() -> list[str] | None:
        got = [n["spec"].get("podCIDR") for n in fake.objects(api.NODES)]
        return got if all(got) else None

    assert await eventually(cidrs) == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    assert (await fake.get(api.NODES, "node2"))["spec"]["podCIDRs"] == ["10.244.1.0/24"]
    await fake.create(api.NODES, node("node4"))
    n4 = await eventually(lambda: _cidr(fake, "node4"))
    assert n4 == "10.244.3.0/24"
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        await eventually(lambda ns=ns: fake.get(api.NAMESPACES, ns))
    svc = await fake.get(api.SERVICES, "kubernetes", "default")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]
    assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    ep = await fake.get(api.ENDPOINTS, "kubernetes", "default")
    assert ep["subsets"] == [{"addresses": [{"ip": "192.168.56.101"}],
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    await fake.get(api.ENDPOINTSLICES, "kubernetes", "default")
    await fake.delete(api.SERVICES, "kubernetes", "default")
    await eventually(lambda: fake.get(api.SERVICES, "kubernetes", "default"))  # recreated


async def _cidr(fake: FakeApiClient, name: str) -> str | None:
    return (await fake.get(api.NODES, name))["spec"].get("podCIDR")


async def test_unschedulable_pod_gets_condition_and_event_then_schedules(cluster: FakeApiClient) -> None:
    fake = cluster
    p = {"metadata": {"name": "picky"}, "spec": {"nodeSelector": {"disk": "ssd"}, "containers": []}}
    await fake.create(api.PODS, p, "default")
    msg = ("0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
           "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: "
           "3 Preemption is not helpful for scheduling.")

    async def failed() -> bool:
        pod = await fake.get(api.PODS, "picky", "default")
        cond = next((c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"), {})
        return cond.get("reason") == "Unschedulable" and cond.get("message") == msg

    await eventually(failed)
    ev = [e for e in fake.objects(api.EVENTS) if e["reason"] == "FailedScheduling"]
    assert ev and ev[0]["type"] == "Warning" and ev[0]["message"] == msg
    assert ev[0]["source"]["component"] == "default-scheduler"
    await fake.patch(api.NODES, "node3", {"metadata": {"labels": {"disk": "ssd"}}})

    async def bound() -> str | None:
        return (await fake.get(api.PODS, "picky", "default"))["spec"].get("nodeName")

    assert await eventually(bound) == "node3"
    assert "Successfully assigned default/picky to node3" in events(fake, "default-scheduler")


async def test_rolling_update_replaces_pods_and_bumps_revision(cluster: FakeApiClient) -> None:
    fake = cluster
    d = await fake.create(api.DEPLOYMENTS, deployment("roll", 3), "default")
    old_rs = f"roll-{compute_hash(d['spec']['template'])}"
    await eventually(lambda: _count(fake, old_rs, 3))
    d = await fake.get(api.DEPLOYMENTS, "roll", "default")
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2"
    d = await fake.update(api.DEPLOYMENTS, d)
    new_rs = f"roll-{compute_hash(d['spec']['template'])}"
    assert new_rs != old_rs

    async def done() -> bool:
        live = [p for p in pods_of(fake, "roll-") if not p["metadata"].get("deletionTimestamp")]
        return len(live) == 3 and all(p["metadata"]["name"].startswith(new_rs) for p in live)

    await eventually(done)
    new = await fake.get(api.REPLICASETS, new_rs, "default")
    old = await fake.get(api.REPLICASETS, old_rs, "default")
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert old["spec"]["replicas"] == 0
    msgs = events(fake, "deployment-controller")
    assert f"Scaled up replica set {new_rs} to 1" in msgs
    assert any(m.startswith(f"Scaled down replica set {old_rs} to ") and m.endswith(" from 3") for m in msgs)


async def test_recreate_strategy(cluster: FakeApiClient) -> None:
    fake = cluster
    d = await fake.create(api.DEPLOYMENTS, deployment("rec", 2, strategy={"type": "Recreate"}), "default")
    await eventually(lambda: _count(fake, "rec-", 2))
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2"
    d = await fake.patch(api.DEPLOYMENTS, "rec", {"spec": {"template": d["spec"]["template"]}}, "default")
    new_rs = f"rec-{compute_hash(d['spec']['template'])}"

    async def done() -> bool:
        live = [p for p in pods_of(fake, "rec-") if not p["metadata"].get("deletionTimestamp")]
        return len(live) == 2 and all(p["metadata"]["name"].startswith(new_rs) for p in live)

    await eventually(done)
    assert f"Scaled up replica set {new_rs} to 2" in events(fake, "deployment-controller")
