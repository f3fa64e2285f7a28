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
    a = s1.create("/k/a", {"metadata": {"name": "a"}})
    w1 = s1.watch("/k/", int(a["metadata"]["resourceVersion"]))
    b = s1.create("/k/b", {"metadata": {"name": "b"}})
    assert [(e.type, e.key) for e in await _drain(w1, 1)] == [("ADDED", "/k/b")]
    s1.close()
    assert await asyncio.wait_for(w1.queue.get(), 5) is None  # closing ends the watch
    other = EtcdStore(etcd_url, root)  # a second writer: its changes reach s2 only via the etcd watch
    other.update("/k/a", {"metadata": {"name": "a"}, "x": 1})  # missed while "down"
    s2 = EtcdStore(etcd_url, root)
    assert s2.get("/k/a")["x"] == 1
    old = s2.watch("/k/", int(b["metadata"]["resourceVersion"]))  # older than s2's cache: etcd replays
    cur = s2.watch("/k/", s2.revision())  # from s2's cache
    other.delete("/k/b")
    c = s2.create("/k/c", {"metadata": {"name": "c"}})
    other.update("/k/c", {"metadata": {"name": "c"}, "y": 2})
    s2.update("/k/a", {"metadata": {"name": "a"}, "x": 3})
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
