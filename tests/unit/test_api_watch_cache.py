"""The etcd store's watch cache: one shared etcd watch fanned out to many watchers, 410 after a
compaction, and resumption across a restart (with another writer on the same root) exactly once."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from netkube.api.etcd_store import EtcdStore
from netkube.api.store import Event, TooOld, Watch
from netkube.api.testing import ThreadedApiServer
from netkube.client import CONFIGMAPS, ApiClient

from .conftest import etcd_root


def etcd_watchers(url: str) -> int:
    """etcd's own count of live watchers (every /v3/watch stream through the gateway adds one)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", text, re.M)
    assert m, "etcd /metrics has no etcd_debugging_mvcc_watcher_total"
    return int(float(m.group(1)))


async def _twenty_watchers(url: str, etcd_url: str, before: int) -> tuple[int, list[list[str]]]:
    c = ApiClient(url)
    try:
        rv = (await c.list(CONFIGMAPS, "default"))["metadata"]["resourceVersion"]
        seen: list[list[str]] = [[] for _ in range(20)]

        async def watch(i: int) -> None:
            w = ApiClient(url)
            try:
                async for t, o in w.watch(CONFIGMAPS, "default", rv, timeout_seconds=20):
                    seen[i].append(f"{t} {o['metadata']['name']}")
                    if len(seen[i]) == 3:
                        return
            finally:
                await w.close()

        tasks = [asyncio.create_task(watch(i)) for i in range(20)]
        await asyncio.sleep(0.5)  # every watch connected
        during = await asyncio.to_thread(etcd_watchers, etcd_url)
        await c.create(CONFIGMAPS, {"metadata": {"name": "x"}, "data": {"a": "1"}}, "default")
        await c.patch(CONFIGMAPS, "x", {"data": {"a": "2"}}, "default")
        await c.delete(CONFIGMAPS, "x", "default")
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        return during - before, seen
    finally:
        await c.close()


def test_etcd_watchers_share_one_stream(etcd_url: str, tmp_path: Path) -> None:
    before = etcd_watchers(etcd_url)
    root = etcd_root()
    s = ThreadedApiServer(str(tmp_path / "db"), store_factory=lambda: EtcdStore(etcd_url, root)).start()
    try:
        added, seen = asyncio.run(_twenty_watchers(s.url, etcd_url, before))
        assert seen == [["ADDED x", "MODIFIED x", "DELETED x"]] * 20
        # the apiserver's one etcd watch (its watch cache), not one per client
        assert added <= 1, f"{added} etcd watchers for 20 API watches"
        assert isinstance(s.store, EtcdStore) and s.store.streams_opened == 1
    finally:
        s.stop()
        s.cleanup()


async def _watch_lines(url: str, rv: str) -> list[dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
                         "&timeoutSeconds=1") as r:
            assert r.status == 200
            return [json.loads(line) for line in (await r.text()).splitlines() if line.strip()]


def test_etcd_compaction_expires_cached_window(etcd_url: str, tmp_path: Path) -> None:
    """An old revision still in the cache's memory is 410 Gone once etcd compacted it."""
    root = etcd_root()
    s = ThreadedApiServer(str(tmp_path / "db"), store_factory=lambda: EtcdStore(etcd_url, root)).start()
    try:
        assert s.kubectl("create", "configmap", "a").returncode == 0
        old = s.kubectl("get", "configmap", "a", "-o", "jsonpath={.metadata.resourceVersion}").stdout
        for i in range(3):
            assert s.kubectl("create", "configmap", f"c{i}").returncode == 0
        # before compaction the old revision is served (from the cache) ...
        events = asyncio.run(_watch_lines(s.url, old))
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "c0"), ("ADDED", "c1"), ("ADDED", "c2")]
        assert isinstance(s.store, EtcdStore)
        s.store.compact(s.store.revision())
        # ... after it, Expired, as etcd answers for compacted history
        events = asyncio.run(_watch_lines(s.url, old))
        assert [(e["type"], e["object"].get("code"), e["object"].get("reason")) for e in events] == [
            ("ERROR", 410, "Expired")]
        now = str(s.store.revision())
        assert s.kubectl("create", "configmap", "d").returncode == 0
        events = asyncio.run(_watch_lines(s.url, now))
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "d")]
    finally:
        s.stop()
        s.cleanup()


async def _drain(w: Watch, n: int) -> list[Event]:
    out = []
    for _ in range(n):
        ev = await asyncio.wait_for(w.queue.get(), 5)
        assert ev is not None
        out.append(ev)
    await asyncio.sleep(0.2)
    assert w.queue.empty(), "an event arrived twice"
    return out


async def test_etcd_cache_resumes_across_restart_exactly_once(etcd_url: str) -> None:
    root = etcd_root()
    s1 = EtcdStore(etcd_url, root)
    a = await s1.create("/k/a", {"metadata": {"name": "a"}})
    w1 = s1.watch("/k/", int(a["metadata"]["resourceVersion"]))
    b = await s1.create("/k/b", {"metadata": {"name": "b"}})
    assert [(e.type, e.key) for e in await _drain(w1, 1)] == [("ADDED", "/k/b")]
    s1.close()
    assert await asyncio.wait_for(w1.queue.get(), 5) is None  # closing ends the watch
    other = EtcdStore(etcd_url, root)  # a second writer: its changes reach s2 only via the etcd watch
    await other.update("/k/a", {"metadata": {"name": "a"}, "x": 1})  # missed while "down"
    s2 = EtcdStore(etcd_url, root)
    assert s2.get("/k/a")["x"] == 1
    old = s2.watch("/k/", int(b["metadata"]["resourceVersion"]))  # older than s2's cache: etcd replays
    cur = s2.watch("/k/", s2.revision())  # from s2's cache
    await other.delete("/k/b")
    c = await s2.create("/k/c", {"metadata": {"name": "c"}})
    await other.update("/k/c", {"metadata": {"name": "c"}, "y": 2})
    await s2.update("/k/a", {"metadata": {"name": "a"}, "x": 3})
    got_old, got_cur = await _drain(old, 5), await _drain(cur, 4)
    assert [(e.type, e.key) for e in got_old] == [
        ("MODIFIED", "/k/a"), ("DELETED", "/k/b"), ("ADDED", "/k/c"), ("MODIFIED", "/k/c"), ("MODIFIED", "/k/a")]
    assert [(e.type, e.key, e.rev) for e in got_cur] == [(e.type, e.key, e.rev) for e in got_old[1:]]
    revs = [e.rev for e in got_old]
    assert revs == sorted(set(revs)) and got_cur[1].rev == int(c["metadata"]["resourceVersion"])
    assert got_cur[3].obj["x"] == 3 and got_cur[3].prev is not None and got_cur[3].prev["x"] == 1
    # reads follow the other writer's changes once the shared watch delivered them
    assert s2.get("/k/c")["y"] == 2 and [o["metadata"]["name"] for o in s2.list("/k/")[0]] == ["a", "c"]
    with pytest.raises(TooOld):
        s2.compact(s2.revision())
        s2.watch("/k/", int(a["metadata"]["resourceVersion"]))
    assert s2.streams_opened == 2  # the cache's and the one for the watch older than it
    s2.close()
    other.close()


async def test_etcd_concurrent_writes_reach_watchers_once_in_order(etcd_url: str) -> None:
    """Writes are in flight together (answers may come back out of revision order); the cache
    still applies and fans them out in revision order, each once, and agrees with etcd."""
    root = etcd_root()
    s = EtcdStore(etcd_url, root)
    try:
        w = s.watch("/k/", s.revision())
        made = await asyncio.gather(*(s.create(f"/k/{i:02d}", {"metadata": {"name": str(i)}}) for i in range(40)))
        assert len(s._pool._idle) > 1, "the writes went one at a time"
        revs = sorted(int(o["metadata"]["resourceVersion"]) for o in made)
        assert [e.rev for e in await _drain(w, 40)] == revs
        done = await asyncio.gather(*(s.update(f"/k/{i:02d}", {"metadata": {"name": str(i)}, "v": i})
                                      for i in range(40)))
        got = await _drain(w, 40)
        assert [e.rev for e in got] == sorted(int(o["metadata"]["resourceVersion"]) for o in done)
        assert {e.type for e in got} == {"MODIFIED"} and all(e.prev and "v" not in e.prev for e in got)
        fresh = EtcdStore(etcd_url, root)  # reads etcd afresh
        try:
            assert fresh.list("/k/") == s.list("/k/")
        finally:
            fresh.close()
    finally:
        s.close()


async def _patch_together(url: str) -> dict:
    c = ApiClient(url)
    try:
        await c.create(CONFIGMAPS, {"metadata": {"name": "shared"}}, "default")
        await asyncio.gather(*(c.patch(CONFIGMAPS, "shared", {"data": {f"k{i}": str(i)}}, "default")
                               for i in range(20)))
        return await c.get(CONFIGMAPS, "shared", "default")
    finally:
        await c.close()


def test_etcd_unconditional_patches_of_one_object_all_apply(etcd_url: str, tmp_path: Path) -> None:
    """With etcd writes in flight together, patches without a resourceVersion to one object must
    neither 409 nor lose each other (upstream retries them; here they take turns per object)."""
    root = etcd_root()
    s = ThreadedApiServer(str(tmp_path / "db"), store_factory=lambda: EtcdStore(etcd_url, root)).start()
    try:
        got = asyncio.run(_patch_together(s.url))
        assert got["data"] == {f"k{i}": str(i) for i in range(20)}
    finally:
        s.stop()
        s.cleanup()


async def _selected_watch(url: str) -> list[tuple[str, str]]:
    c = ApiClient(url)
    try:
        rv = (await c.list(CONFIGMAPS, "default"))["metadata"]["resourceVersion"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/v1/namespaces/default/configmaps", params={
                    "watch": "true", "resourceVersion": rv, "labelSelector": "app=x", "timeoutSeconds": "2"}) as r:
                await c.create(CONFIGMAPS, {"metadata": {"name": "s"}, "data": {"v": "0"}}, "default")
                await c.patch(CONFIGMAPS, "s", {"metadata": {"labels": {"app": "x"}}}, "default")
                await c.patch(CONFIGMAPS, "s", {"data": {"v": "1"}}, "default")
                await c.patch(CONFIGMAPS, "s", {"metadata": {"labels": {"app": "y"}}}, "default")
                await c.delete(CONFIGMAPS, "s", "default")
                lines = [json.loads(line) for line in (await r.text()).splitlines() if line.strip()]
        return [(e["type"], e["object"]["data"]["v"]) for e in lines]
    finally:
        await c.close()


def _server(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ThreadedApiServer:
    """An API server on sqlite, or on the etcd fixture's etcd."""
    factory = None
    if kind == "etcd":
        url, root = request.getfixturevalue("etcd_url"), etcd_root()
        factory = lambda: EtcdStore(url, root)  # noqa: E731
    return ThreadedApiServer(str(tmp_path / "db"), store_factory=factory).start()


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
def test_selector_watch_sees_objects_enter_and_leave(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A filtered watch needs each event's previous state (entering the selection is ADDED,
    leaving it DELETED); the etcd cache supplies it from its own copy, not from etcd."""
    s = _server(kind, tmp_path, request)
    try:
        assert asyncio.run(_selected_watch(s.url)) == [("ADDED", "0"), ("MODIFIED", "1"), ("DELETED", "1")]
    finally:
        s.stop()
        s.cleanup()


async def _bookmarked(url: str) -> tuple[list[int], int, list[int], list[int]]:
    """Events and the first bookmark after 30 concurrent creates; then what a resume from that
    bookmark delivers for 5 more creates."""
    c = ApiClient(url)
    try:
        rv = (await c.list(CONFIGMAPS, "default"))["metadata"]["resourceVersion"]
        events: list[int] = []
        mark = 0
        made: list[int] = []

        async def write() -> None:
            done = await asyncio.gather(*(c.create(CONFIGMAPS, {"metadata": {"name": f"b{i:02d}"}}, "default")
                                          for i in range(30)))
            made.extend(int(o["metadata"]["resourceVersion"]) for o in done)

        writer = asyncio.create_task(write())
        async with asyncio.timeout(15):
            async for t, o in c.watch(CONFIGMAPS, "default", rv, timeout_seconds=10):
                if t == "BOOKMARK":
                    if writer.done():
                        mark = int(o["metadata"]["resourceVersion"])
                        break
                else:
                    events.append(int(o["metadata"]["resourceVersion"]))
        await writer
        more = [int((await c.create(CONFIGMAPS, {"metadata": {"name": f"m{i}"}}, "default"))["metadata"]["resourceVersion"])
                for i in range(5)]
        resumed: list[int] = []
        async with asyncio.timeout(10):
            async for t, o in c.watch(CONFIGMAPS, "default", str(mark), timeout_seconds=10):
                if t != "BOOKMARK":
                    resumed.append(int(o["metadata"]["resourceVersion"]))
                if len(resumed) == 5:
                    break
        return sorted(made), mark, events + resumed, more
    finally:
        await c.close()


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
def test_bookmark_resume_loses_and_repeats_nothing(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from netkube.api import watch

    monkeypatch.setattr(watch, "BOOKMARK_INTERVAL", 0.2)
    monkeypatch.setattr(watch, "POLL", 0.1)
    s = _server(kind, tmp_path, request)
    try:
        made, mark, seen, more = asyncio.run(_bookmarked(s.url))
        assert mark >= made[-1], "the bookmark names a revision whose events were not all sent"
        assert seen == made + more  # every change once, in revision order, across the resume
    finally:
        s.stop()
        s.cleanup()
