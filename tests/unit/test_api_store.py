"""Store semantics, ApiClient/Informer against the server, restart, conflicts, 410, fuzzing."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netkube.api.etcd_store import EtcdStore
from netkube.api.patch import json_patch, strategic_merge
from netkube.api.selectors import parse_labels
from netkube.api.sqlite_store import SqliteStore
from netkube.api.store import KeyExists, KeyMissing, RevisionMismatch, Store, TooOld
from netkube.api.tables.age import human_duration
from netkube.api.testing import ThreadedApiServer
from netkube.client import CONFIGMAPS, PODS, SERVICES, ApiClient, ApiError, Informer

from .conftest import etcd_root

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


@pytest.fixture(params=["sqlite", "etcd"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens the same store again on each call (a restart): sqlite at one path or etcd under one root."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "db")
    url, root = request.getfixturevalue("etcd_url"), etcd_root()
    return lambda: EtcdStore(url, root)


async def test_store_revisions_persist_and_conflict(open_store: Callable[[], Store]) -> None:
    s = open_store()
    a = await s.create("/k/a", {"metadata": {"name": "a"}})
    b = await s.update("/k/a", {"metadata": {"name": "a"}, "x": 1}, a["metadata"]["resourceVersion"])
    assert int(b["metadata"]["resourceVersion"]) == int(a["metadata"]["resourceVersion"]) + 1
    with pytest.raises(KeyExists):
        await s.create("/k/a", {"metadata": {"name": "a"}})
    with pytest.raises(RevisionMismatch):
        await s.update("/k/a", {"metadata": {}}, a["metadata"]["resourceVersion"])
    with pytest.raises(KeyMissing):
        await s.delete("/k/none")
    assert s.list("/k/")[0] == [b] and s.get("/k/a") == b
    rev = s.revision()
    s.close()
    s2 = open_store()
    assert s2.revision() == rev and s2.get("/k/a")["x"] == 1
    # the event log survives a restart (sqlite's events table; etcd's MVCC history)
    w = s2.watch("/k/", int(a["metadata"]["resourceVersion"]))
    ev = await asyncio.wait_for(w.queue.get(), 5)
    assert ev is not None and (ev.type, ev.obj, ev.prev and ev.prev["metadata"]) == ("MODIFIED", b, a["metadata"])
    c = await s2.create("/k/b", {"metadata": {}})
    assert int(c["metadata"]["resourceVersion"]) > rev
    d = await s2.delete("/k/a", b["metadata"]["resourceVersion"])
    events = [await asyncio.wait_for(w.queue.get(), 5) for _ in range(2)]
    assert [(e.type, e.key, e.rev) for e in events if e] == [
        ("ADDED", "/k/b", int(c["metadata"]["resourceVersion"])),
        ("DELETED", "/k/a", int(d["metadata"]["resourceVersion"]))]
    assert events[1] is not None and events[1].obj["x"] == 1  # DELETED carries the last state
    s2.unwatch(w)
    s2.close()


async def test_store_log_is_bounded(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "db", log_size=3)
    first = s.revision()
    for i in range(6):
        await s.create(f"/k/{i}", {"metadata": {}})
    with pytest.raises(TooOld):
        s.watch("/k/", first)
    w = s.watch("/k/", s.revision() - 2)
    assert w.queue.qsize() == 2
    s.close()


async def test_etcd_compaction_is_too_old(etcd_url: str) -> None:
    s = EtcdStore(etcd_url, etcd_root())
    first = s.revision()
    for i in range(3):
        await s.create(f"/k/{i}", {"metadata": {}})
    s.compact(s.revision())
    with pytest.raises(TooOld):
        s.watch("/k/", first)
    w = s.watch("/k/", s.revision())  # from the compaction point on is still fine
    await s.create("/k/x", {"metadata": {}})
    ev = await asyncio.wait_for(w.queue.get(), 5)
    assert ev is not None and ev.key == "/k/x"
    s.close()


def test_selectors_patch_age() -> None:
    m = parse_labels("app in (a,b),tier!=db,!legacy,env")
    assert m({"app": "a", "env": "x"}) and not m({"app": "c", "env": "x"}) and not m({"app": "a"})
    assert not m({"app": "a", "env": "x", "legacy": "1"})
    cur = {"spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}]}}
    out = strategic_merge(cur, {"spec": {"$setElementOrder/containers": [{"name": "a"}],
                                          "containers": [{"name": "a", "image": "y"}, {"name": "b", "image": "z"}]}})
    assert [c["image"] for c in out["spec"]["containers"]] == ["y", "z"]
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]
    assert json_patch({"a": [1]}, [{"op": "add", "path": "/a/-", "value": 2}]) == {"a": [1, 2]}
    assert [human_duration(s) for s in (5, 182, 4 * 3600, 2 * 86400 + 5)] == ["5s", "3m2s", "4h", "2d"]


def server(kind: str, tmp_path: Path, request: pytest.FixtureRequest, **kw: Any) -> ThreadedApiServer:
    """An apiserver on sqlite or on the session's etcd (under a fresh key root)."""
    if kind == "etcd":
        url, root = request.getfixturevalue("etcd_url"), etcd_root()
        kw["store_factory"] = lambda: EtcdStore(url, root)
    return ThreadedApiServer(str(tmp_path / "store.sqlite"), **kw)


@pytest.fixture(params=["sqlite", "etcd"])
def srv(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    s = server(request.param, tmp_path, request, log_size=50).start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


async def _informer_sees_changes(url: str) -> list[tuple[str, str]]:
    c = ApiClient(url)
    seen: list[tuple[str, str]] = []
    inf = Informer(c, PODS, "default")
    inf.add_handler(lambda t, o, old: seen.append((t, o["metadata"]["name"])))
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.synced.wait(), 5)
        await c.create(PODS, POD, "default")
        await c.patch(PODS, "a", {"metadata": {"labels": {"x": "y"}}}, "default")
        await c.delete(PODS, "a", "default")  # unbound: removed at once
        for _ in range(50):
            if ("DELETED", "a") in seen:
                break
            await asyncio.sleep(0.1)
        return seen
    finally:
        task.cancel()
        await c.close()


def test_informer_added_modified_deleted(srv: ThreadedApiServer) -> None:
    assert asyncio.run(_informer_sees_changes(srv.url)) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


async def _conflict_and_allocation(url: str) -> None:
    c = ApiClient(url)
    try:
        cm = await c.create(CONFIGMAPS, {"metadata": {"name": "x"}, "data": {"a": "1"}}, "default")
        cm["data"]["a"] = "2"
        await c.update(CONFIGMAPS, cm)
        with pytest.raises(ApiError) as e:
            await c.update(CONFIGMAPS, cm)  # stale resourceVersion
        assert e.value.code == 409 and e.value.status["message"] == (
            'Operation cannot be fulfilled on configmaps "x": the object has been modified; '
            "please apply your changes to the latest version and try again")
        svc = {"metadata": {"name": "dns"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                                                     "ports": [{"port": 53, "nodePort": 30053}]}}
        got = await c.create(SERVICES, svc, "default")
        assert got["spec"]["clusterIP"] == "10.96.0.10" and got["spec"]["externalTrafficPolicy"] == "Cluster"
        svc2 = {"metadata": {"name": "dns2"}, "spec": {"type": "NodePort", "ports": [{"port": 53, "nodePort": 30053}]}}
        with pytest.raises(ApiError) as e:
            await c.create(SERVICES, svc2, "default")
        assert e.value.code == 422 and "provided port is already allocated" in e.value.status["message"]
        got["spec"]["clusterIP"] = "10.96.0.11"
        with pytest.raises(ApiError) as e:
            await c.update(SERVICES, got)
        assert "field is immutable" in e.value.status["message"]
        await c.delete(SERVICES, "dns", "default")
        assert (await c.create(SERVICES, svc2, "default"))["spec"]["ports"][0]["nodePort"] == 30053
        with pytest.raises(ApiError) as e:
            await c.get(PODS, "nope", "default")
        assert e.value.code == 404 and e.value.status["message"] == 'pods "nope" not found'
    finally:
        await c.close()


def test_conflict_and_service_allocation(srv: ThreadedApiServer) -> None:
    asyncio.run(_conflict_and_allocation(srv.url))


async def _watch_events(url: str, rv: str) -> list[dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/api/v1/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1") as r:
            assert r.status == 200
            return [json.loads(line) for line in (await r.text()).splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
def test_restart_keeps_objects_and_expired_watch(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    s = server(kind, tmp_path, request, log_size=5).start()
    port = s.port
    try:
        r = s.kubectl("run", "keep", "--image=busybox")
        assert r.returncode == 0, r.stderr
        before = json.loads(s.kubectl("get", "pod", "keep", "-o", "json").stdout)
    finally:
        s.stop()
    s.port = port
    s.start()
    try:
        after = json.loads(s.kubectl("get", "pod", "keep", "-o", "json").stdout)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        for i in range(6):  # more writes than sqlite's log of 5 keeps; etcd compacts explicitly
            assert s.kubectl("create", "configmap", f"c{i}").returncode == 0
        if isinstance(s.store, EtcdStore):
            s.store.compact(s.store.revision())
        events = asyncio.run(_watch_events(s.url, before["metadata"]["resourceVersion"]))
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
        assert events[0]["object"]["reason"] == "Expired"
        # a watch from the current revision works and rv 0 replays existing objects as ADDED
        events = asyncio.run(_watch_events(s.url, "0"))
        assert ("ADDED", "keep") in [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    finally:
        s.stop()
        s.cleanup()


async def _watch_until(url: str, rv: str, n: int) -> list[tuple[str, str, str]]:
    """Read a configmap watch from rv until n events arrived (then disconnect, as a dropped client)."""
    out: list[tuple[str, str, str]] = []
    c = ApiClient(url)
    try:
        async with asyncio.timeout(10):
            async for t, o in c.watch(CONFIGMAPS, "default", rv, timeout_seconds=20):
                if t != "BOOKMARK":
                    out.append((t, o["metadata"]["name"], o["metadata"]["resourceVersion"]))
                if len(out) == n:
                    break
    finally:
        await c.close()
    return out


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
def test_watch_resumes_across_server_restart(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A client that saw events up to rv A reconnects to a restarted server with A and gets every
    later change exactly once: those made before the restart it missed, and those after."""
    s = server(kind, tmp_path, request).start()
    port = s.port
    try:
        start = s.kubectl("get", "configmaps", "-o", "jsonpath={.metadata.resourceVersion}").stdout
        assert s.kubectl("create", "configmap", "a").returncode == 0
        seen = asyncio.run(_watch_until(s.url, start, 1))
        assert [(t, n) for t, n, _ in seen] == [("ADDED", "a")]
        assert s.kubectl("create", "configmap", "b").returncode == 0  # missed: client is away
        assert s.kubectl("label", "configmap", "a", "x=1").returncode == 0
    finally:
        s.stop()
    s.port = port
    s.start()
    try:
        assert s.kubectl("delete", "configmap", "b").returncode == 0
        assert s.kubectl("create", "configmap", "c").returncode == 0
        resumed = asyncio.run(_watch_until(s.url, seen[-1][2], 4))
        assert [(t, n) for t, n, _ in resumed] == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
        rvs = [int(rv) for *_, rv in seen + resumed]
        assert rvs == sorted(set(rvs))  # strictly increasing: nothing twice
        names = s.kubectl("get", "configmaps", "-o", "name").stdout.split()
        assert names == ["configmap/a", "configmap/c"]
    finally:
        s.stop()
        s.cleanup()


async def _fuzz(url: str) -> None:
    rnd = random.Random(7)
    seeds = [b"{", b"[]", b"null", b'{"metadata":5}', b'{"kind":"Pod","spec":[]}', b"\xff\xfe", b"k8s\x00\x0a\x05",
             b'{"metadata":{"name":"x"},"spec":{"containers":[{"name":1,"ports":[{"containerPort":"a"}]}]}}',
             b'{"metadata":{"name":"x"},"spec":{"ports":"zz","type":7}}', b"a: [", b"x" * (3 * 1024 * 1024 + 10)]
    paths = ["/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/services", "/apis/apps/v1/namespaces/default/deployments",
             "/api/v1/namespaces", "/api/v1/namespaces/default/pods/x", "/apis/apps/v1/namespaces/default/deployments/x/scale"]
    ctypes = ["application/json", "application/yaml", "application/merge-patch+json", "application/json-patch+json",
              "application/strategic-merge-patch+json", "application/vnd.kubernetes.protobuf"]
    async with aiohttp.ClientSession() as s:
        for i in range(120):
            body = rnd.choice(seeds) if i < 60 else bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 64)))
            method = rnd.choice(["POST", "PUT", "PATCH", "DELETE"])
            async with s.request(method, url + rnd.choice(paths), data=body,
                                 headers={"Content-Type": rnd.choice(ctypes)}) as r:
                assert r.status < 500, await r.text()
                if r.status >= 400:
                    assert (await r.json())["kind"] == "Status"
        async with s.get(url + "/api/v1/namespaces/default/pods") as r:
            assert r.status == 200 and (await r.json())["items"] == []


def test_fuzz_leaves_server_answering(srv: ThreadedApiServer) -> None:
    asyncio.run(_fuzz(srv.url))
