"""LIST chunking (limit/continue) on both stores: tokens, consistent snapshots across chunks,
remainingItemCount, 410 Expired for a compacted snapshot, and the real kubectl paging 500 at a time."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from netkube.api import paging
from netkube.api.etcd_store import EtcdStore
from netkube.api.status import ApiStatusError
from netkube.api.testing import ThreadedApiServer
from netkube.client import CONFIGMAPS, ApiClient

from .conftest import etcd_root

Obj = dict[str, Any]
CM_PATH = "/api/v1/namespaces/default/configmaps"


def test_continue_tokens_round_trip_and_reject_forgeries() -> None:
    tok = paging.encode(42, "default/b\x00")
    assert "=" not in tok and paging.decode(tok) == (42, "default/b\x00")
    assert paging.decode(paging.encode(-1, "x")) == (-1, "x")
    # upstream's token is plain JSON in URL-safe base64: a client-side decode must see the same fields
    raw = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    assert raw == {"v": "meta.k8s.io/v1", "rv": 42, "start": "default/b\x00"}
    for bad in ("!!!", base64.urlsafe_b64encode(b'{"v":"other","rv":1,"start":"a"}').decode(),
                paging.encode(1, "/etc/passwd"), paging.encode(1, "../x"),
                base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":"1","start":"a"}').decode()):
        with pytest.raises(ApiStatusError) as e:
            paging.decode(bad)
        assert e.value.code == 400 and e.value.message.startswith("invalid continue token")
    assert paging.parse_limit(None) == 0 and paging.parse_limit("500") == 500 and paging.parse_limit("-3") == 0
    with pytest.raises(ApiStatusError):
        paging.parse_limit("ten")


@pytest.fixture(params=["sqlite", "etcd"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ThreadedApiServer]:
    factory = None
    if request.param == "etcd":
        url, root = request.getfixturevalue("etcd_url"), etcd_root()
        factory = lambda: EtcdStore(url, root)  # noqa: E731
    # a short sqlite event log (20 events) so a test can outlive a snapshot without 10000 writes
    s = ThreadedApiServer(str(tmp_path / "store.sqlite"), store_factory=factory, log_size=20).start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


async def _get(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, Obj]:
    async with http.get(url + CM_PATH, params=params) as r:
        return r.status, await r.json()


def _names(body: Obj) -> list[str]:
    return [o["metadata"]["name"] for o in body["items"]]


async def _chunks_are_one_snapshot(url: str) -> None:
    c = ApiClient(url)
    try:
        for i in range(7):
            await c.create(CONFIGMAPS, {"metadata": {"name": f"c{i}", "labels": {"odd": str(i % 2)}},
                                        "data": {"v": "old"}}, "default")
        async with aiohttp.ClientSession() as http:
            st, first = await _get(http, url, limit="3")
            assert st == 200 and _names(first) == ["c0", "c1", "c2"]
            md = first["metadata"]
            assert md["remainingItemCount"] == 4 and md["continue"]
            rv = md["resourceVersion"]
            # changes after the first chunk do not show in the later ones (upstream reads them all at rv)
            await c.delete(CONFIGMAPS, "c4", "default")
            await c.patch(CONFIGMAPS, "c5", {"data": {"v": "new"}}, "default")
            await c.create(CONFIGMAPS, {"metadata": {"name": "c9"}}, "default")
            st, second = await _get(http, url, limit="3", **{"continue": md["continue"]})
            assert st == 200 and _names(second) == ["c3", "c4", "c5"]
            assert second["items"][2]["data"] == {"v": "old"} and second["metadata"]["resourceVersion"] == rv
            assert second["metadata"]["remainingItemCount"] == 1
            st, last = await _get(http, url, limit="3", **{"continue": second["metadata"]["continue"]})
            assert st == 200 and _names(last) == ["c6"] and "continue" not in last["metadata"]
            assert "remainingItemCount" not in last["metadata"]
            # a fresh list sees the changes; a selector fills chunks with matches and counts nothing
            st, now = await _get(http, url)
            assert _names(now) == ["c0", "c1", "c2", "c3", "c5", "c6", "c9"] and "continue" not in now["metadata"]
            st, odd = await _get(http, url, limit="2", labelSelector="odd=1")
            assert _names(odd) == ["c1", "c3"] and "remainingItemCount" not in odd["metadata"]
            st, odd2 = await _get(http, url, limit="2", labelSelector="odd=1", **{"continue": odd["metadata"]["continue"]})
            assert _names(odd2) == ["c5"]
            # Table chunks (kubectl get) carry the same continue metadata
            async with http.get(url + CM_PATH, params={"limit": "4"},
                                headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as r:
                table = await r.json()
            assert [row["cells"][0] for row in table["rows"]] == ["c0", "c1", "c2", "c3"]
            assert table["metadata"]["remainingItemCount"] == 3 and table["metadata"]["continue"]
            st, bad = await _get(http, url, limit="2", resourceVersion="5", **{"continue": md["continue"]})
            assert st == 400 and bad["message"] == "specifying resource version is not allowed when using continue"
    finally:
        await c.close()


def test_chunks_are_one_snapshot(srv: ThreadedApiServer) -> None:
    asyncio.run(_chunks_are_one_snapshot(srv.url))


async def _expired_continue(url: str, outlive: Callable[[], None]) -> None:
    c = ApiClient(url)
    try:
        for i in range(5):
            await c.create(CONFIGMAPS, {"metadata": {"name": f"e{i}"}}, "default")
        async with aiohttp.ClientSession() as http:
            st, first = await _get(http, url, limit="2")
            assert _names(first) == ["e0", "e1"]
            for i in range(25):  # more than the sqlite log keeps
                await c.patch(CONFIGMAPS, "e0", {"data": {"n": str(i)}}, "default")
            await c.delete(CONFIGMAPS, "e3", "default")
            await asyncio.to_thread(outlive)
            st, gone = await _get(http, url, limit="2", **{"continue": first["metadata"]["continue"]})
            assert st == 410 and (gone["reason"], gone["code"]) == ("Expired", 410)
            assert gone["message"].startswith("The provided continue parameter is too old")
            # the token in the Status goes on from the same key at the latest revision
            st, rest = await _get(http, url, limit="5", **{"continue": gone["metadata"]["continue"]})
            assert st == 200 and _names(rest) == ["e2", "e4"]
            assert int(rest["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    finally:
        await c.close()


def test_continue_after_compaction_is_expired(srv: ThreadedApiServer) -> None:
    def outlive() -> None:
        if isinstance(srv.store, EtcdStore):  # etcd forgets history by compaction, sqlite by its log size
            srv.store.compact(srv.store.revision())

    asyncio.run(_expired_continue(srv.url, outlive))


def test_kubectl_get_pages_through_more_than_500(srv: ThreadedApiServer) -> None:
    async def fill() -> None:
        c = ApiClient(srv.url)
        try:
            sem = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                async with sem:
                    await c.create(CONFIGMAPS, {"metadata": {"name": f"m{i:04d}"}}, "default")

            await asyncio.gather(*(one(i) for i in range(620)))
        finally:
            await c.close()

    asyncio.run(fill())
    r = srv.kubectl("get", "configmaps", "-v=6", timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    names = [n for n in rows if n.startswith("m")]
    assert names == [f"m{i:04d}" for i in range(620)]
    requests = re.findall(r"GET \S+/api/v1/namespaces/default/configmaps\?(\S+) 200", r.stderr)
    assert len(requests) == 2, r.stderr
    assert "limit=500" in requests[0] and "continue=" not in requests[0]
    assert "limit=500" in requests[1] and "continue=" in requests[1]
    r = srv.kubectl("get", "configmaps", "-o", "name", "--chunk-size=200", timeout=60)
    assert r.returncode == 0 and len([n for n in r.stdout.split() if n.startswith("configmap/m")]) == 620


@pytest.mark.parametrize("kind", ["sqlite", "etcd"])
async def test_store_pages_a_snapshot_older_than_the_cache(kind: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    """Both ways a store answers an old snapshot: undoing retained events, and (etcd, past its
    3-event cache window) a range read at that revision from etcd's MVCC history."""
    from netkube.api.sqlite_store import SqliteStore
    from netkube.api.store import Store

    s: Store = (SqliteStore(tmp_path / "db", log_size=100) if kind == "sqlite"
                else EtcdStore(request.getfixturevalue("etcd_url"), etcd_root(), log_size=3))
    try:
        s.unwatch(s.watch("/k/", s.revision()))  # starts the etcd store's cache
        for i in range(5):
            await s.create(f"/k/{i}", {"metadata": {"name": str(i)}, "v": 0})
        first = await s.list_page("/k/", "/k/", 2, None)
        assert first.last_key == "/k/1" and first.remaining == 3
        for i in range(5):
            await s.update(f"/k/{i}", {"metadata": {"name": str(i)}, "v": 1})
        await s.delete("/k/3")
        await s.create("/k/5", {"metadata": {"name": "5"}})
        rest = await s.list_page("/k/", "/k/1\x00", 0, first.rev)
        objs = [json.loads(t) for t in rest.items]
        assert [(o["metadata"]["name"], o["v"]) for o in objs] == [("2", 0), ("3", 0), ("4", 0)]
        assert rest.rev == first.rev and rest.last_key is None
        assert [o["metadata"]["resourceVersion"] for o in objs] == [
            str(first.rev - 2), str(first.rev - 1), str(first.rev)]
    finally:
        s.close()
