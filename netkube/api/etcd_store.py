"""EtcdStore: the Store protocol on etcd v3 through its gRPC-gateway JSON API (/v3/kv/*, /v3/watch)."""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import http.client
import json
import logging
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from .etcd_http import HttpPool
from .store import Event, KeyExists, KeyMissing, Obj, Page, RevisionMismatch, TooOld, Watch, page_of, rewind

log = logging.getLogger(__name__)
COMPACTED = "required revision has been compacted"
FUTURE = "required revision is a future revision"


class EtcdUnavailable(RuntimeError):
    """etcd did not answer; the message names the endpoint and how to fix it."""


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def range_end(prefix: str) -> str:
    """etcd lists [key, range_end): the prefix with its last byte incremented (clientv3.GetPrefixRangeEnd)."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return base64.b64encode(bytes(raw[: i + 1])).decode()
    return base64.b64encode(b"\0").decode()  # all 0xff: to the end of the keyspace


def _load(raw: bytes | str, rev: int) -> Obj:
    obj: Obj = json.loads(raw or b"{}")
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return obj


class _Cache:
    """upstream's watch cache in small: every object under the root as of `rev` (as JSON text with
    its resourceVersion, so a LIST can splice it unparsed), the events after `floor`, and the watchers served from them. One etcd watch
    stream (`task`) keeps it current; this process's own writes are applied at once when they are
    the very next revision (the usual case: the apiserver is etcd's only writer)."""

    def __init__(self, objs: dict[str, str], rev: int, log_size: int,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.objs = objs
        self.keys = sorted(objs)
        self.rev = self.floor = rev
        self.log: collections.deque[Event] = collections.deque(maxlen=log_size)
        self.loop = loop
        self.subs: dict[Watch, int] = {}  # watcher -> deliver events newer than this revision
        self.pending: collections.deque[Event] = collections.deque()  # applied, not yet fanned out
        self.own: dict[int, Event] = {}  # our writes answered ahead of an earlier revision still in flight
        self.task: asyncio.Task[None] | None = None

    def apply(self, ev: Event) -> None:
        """Record ev (caller holds the store's lock and has checked ev.rev > self.rev). Applied in
        revision order, the cached object is exactly the previous state: events arrive without
        prev_kv (less work for etcd per write) and get their prev here."""
        before = self.objs.get(ev.key)
        if ev.prev is None and before is not None and ev.type != "ADDED":
            ev.prev = json.loads(before)
            if ev.type == "DELETED":  # the last state, at the deletion's revision
                ev.obj = {**ev.prev, "metadata": {**ev.prev.get("metadata", {}), "resourceVersion": str(ev.rev)}}
        if ev.type == "DELETED":
            if self.objs.pop(ev.key, None) is not None:
                i = bisect.bisect_left(self.keys, ev.key)
                if i < len(self.keys) and self.keys[i] == ev.key:
                    del self.keys[i]
        else:
            if ev.key not in self.objs:
                bisect.insort(self.keys, ev.key)
            self.objs[ev.key] = json.dumps(ev.obj, separators=(",", ":"))
        self.rev = ev.rev
        if len(self.log) == self.log.maxlen:
            self.floor = self.log[0].rev
        self.log.append(ev)
        self.pending.append(ev)

    def catch_up(self) -> None:
        """Apply our buffered writes that are now next in revision order; drop what the etcd
        stream already delivered."""
        while (ev := self.own.pop(self.rev + 1, None)) is not None:
            self.apply(ev)
        for r in [r for r in self.own if r <= self.rev]:
            del self.own[r]

    def drain(self) -> None:
        """Hand pending events to the watchers, in revision order (on the loop's thread)."""
        while self.pending:
            ev = self.pending.popleft()
            for w, after in self.subs.items():
                if ev.rev > after and ev.key.startswith(w.prefix):
                    w.queue.put_nowait(ev)


class EtcdStore:
    """Objects as JSON values under root+key; resourceVersion is etcd's mod_revision, as upstream.

    Reads and watches are served from an in-memory watch cache that one shared etcd watch stream
    keeps current (started on first use from an event loop), so GET/LIST/watch never wait on etcd;
    a read right after a write the cache has not applied yet goes to etcd. Writes are coroutines:
    one txn each over a pool of keep-alive connections, so the loop serves (and delivers watch
    events) while etcd commits, and concurrent writes share etcd's batched commit. A watch from a
    revision older than the cache's window gets its own etcd watch stream (or TooOld once etcd
    compacted that history).
    """

    def __init__(self, endpoint: str, root: str = "", timeout: float = 10.0, log_size: int = 10000) -> None:
        u = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"--etcd-endpoints {endpoint!r}: give a plain http URL such as http://127.0.0.1:2379")
        self.endpoint = f"http://{u.hostname}:{u.port or 2379}"
        self.root = root.rstrip("/")
        self.timeout = timeout
        self.log_size = log_size
        self._conn: http.client.HTTPConnection | None = None  # the rare blocking reads (start-up, misses)
        self._pool = HttpPool(u.hostname, u.port or 2379, timeout=timeout)  # writes and paged reads
        self._lock = threading.Lock()  # ThreadedApiServer tests may call in from another thread
        self._mu = threading.RLock()  # the cache, _written and _compacted
        self._cache: _Cache | None = None
        self._written = 0  # newest revision this store wrote: reads wait for the cache to reach it
        self._compacted = 0  # history before this revision is gone (compact() through this store)
        self._watches: dict[Watch, asyncio.Task[None]] = {}  # watches with their own etcd stream
        self.streams_opened = 0  # etcd watch streams this store opened (the cache's and per-watch)

    # --- transport ----------------------------------------------------------------------------
    def _call(self, path: str, body: Obj) -> Obj:
        data = json.dumps(body).encode()
        with self._lock:
            for attempt in (0, 1):  # one retry: a keep-alive connection etcd closed meanwhile
                if self._conn is None:
                    u = urlsplit(self.endpoint)
                    self._conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=self.timeout)
                try:
                    self._conn.request("POST", path, data, {"Content-Type": "application/json"})
                    resp = self._conn.getresponse()
                    text = resp.read()
                    break
                except (OSError, http.client.HTTPException) as e:
                    self._conn.close()
                    self._conn = None
                    if attempt:
                        raise EtcdUnavailable(
                            f"etcd at {self.endpoint} did not answer ({e}); start etcd there or pass the right "
                            f"--etcd-endpoints") from None
        return self._answer(path, resp.status, text)

    async def _acall(self, path: str, body: Obj) -> Obj:
        try:
            status, text = await self._pool.post(path, body)
        except OSError as e:
            raise EtcdUnavailable(f"etcd at {self.endpoint} did not answer ({e}); start etcd there or pass the "
                                  f"right --etcd-endpoints") from None
        return self._answer(path, status, text)

    def _answer(self, path: str, status: int, text: bytes) -> Obj:
        out: Obj = json.loads(text) if text else {}
        if status != 200:
            msg = str(out.get("message") or out.get("error") or text[:200])
            if COMPACTED in msg:
                raise _Compacted(msg)
            if FUTURE in msg:
                raise _Future(msg)
            raise EtcdUnavailable(f"etcd at {self.endpoint} refused {path}: {msg}")
        return out

    def _key(self, key: str) -> str:
        return self.root + key

    def _decode(self, kv: Obj, rev: int | None = None) -> Obj:
        return _load(base64.b64decode(kv.get("value", "")), rev or int(kv["mod_revision"]))

    @staticmethod
    def _raw(obj: Obj) -> bytes:
        # upstream stores objects without resourceVersion and sets it from mod_revision on read
        md = obj.get("metadata") or {}
        stored = {**obj, "metadata": {k: v for k, v in md.items() if k != "resourceVersion"}}
        return json.dumps(stored, separators=(",", ":")).encode()

    @classmethod
    def _encode(cls, obj: Obj) -> str:
        return base64.b64encode(cls._raw(obj)).decode()

    # --- the watch cache ----------------------------------------------------------------------
    def _running(self) -> _Cache | None:
        """The cache, started on first use from a loop; None outside a loop before that."""
        c = self._cache
        if c is None or (c.task is not None and c.task.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
            c = self._start_cache(loop)
        return c

    def _fresh(self) -> _Cache | None:
        """The cache when it holds every write this store made; None means: ask etcd."""
        c = self._running()
        return c if c is not None and c.rev >= self._written else None

    def _start_cache(self, loop: asyncio.AbstractEventLoop) -> _Cache:
        k = self._key("/")
        out = self._call("/v3/kv/range", {"key": b64(k), "range_end": range_end(k)})
        strip = len(self.root)
        objs = {unb64(kv["key"])[strip:]: json.dumps(self._decode(kv), separators=(",", ":"))
                for kv in out.get("kvs") or []}
        c = _Cache(objs, int(out["header"]["revision"]), self.log_size, loop)
        with self._mu:
            old, self._cache = self._cache, c
        if old is not None:
            self._end_cache(old)
        c.task = loop.create_task(self._follow(c))
        return c

    def _end_cache(self, c: _Cache) -> None:
        with self._mu:
            if self._cache is c:
                self._cache = None
            subs = list(c.subs)
            c.subs.clear()
        if c.task is not None and not c.task.done():
            c.task.cancel()
        for w in subs:
            w.queue.put_nowait(None)  # its client re-watches from its last resourceVersion

    async def _follow(self, c: _Cache) -> None:
        """The cache's one etcd watch: every change under the root after c.rev, in order."""
        k = self._key("/")
        strip = len(self.root)

        def on_event(ev: Obj) -> None:
            kv = ev["kv"]
            rev = int(kv["mod_revision"])
            with self._mu:
                if rev <= c.rev:
                    return  # already applied when this store wrote it
                c.apply(self._event(ev, strip))
                c.catch_up()
                c.drain()

        try:
            await self._stream_from(k, c.rev + 1, on_event, prev_kv=False)
        finally:
            if self._cache is c:
                self._end_cache(c)

    def _publish(self, c: _Cache | None, ev: Event) -> None:
        """A write of ours: into the cache now if it is the next revision, else held until the
        revisions before it are applied (a concurrent write's answer, or the etcd stream)."""
        with self._mu:
            self._written = max(self._written, ev.rev)
            if c is None or c is not self._cache or ev.rev <= c.rev:
                return
            c.own[ev.rev] = ev
            c.catch_up()
        try:
            here = asyncio.get_running_loop() is c.loop
        except RuntimeError:
            here = False
        if here:
            with self._mu:
                c.drain()
        elif not c.loop.is_closed():
            c.loop.call_soon_threadsafe(self._drain, c)

    def _drain(self, c: _Cache) -> None:
        with self._mu:
            c.drain()

    # --- Store protocol -----------------------------------------------------------------------
    def revision(self) -> int:
        # what the cache (and so every watcher fed from it) has reached: a bookmark must not name a
        # revision whose events a watcher has not been sent yet
        c = self._running()
        if c is not None:
            return c.rev
        out = self._call("/v3/kv/range", {"key": b64(self._key("/")), "count_only": True})
        return int(out["header"]["revision"])

    def get(self, key: str) -> Obj | None:
        c = self._fresh()
        if c is not None:
            with self._mu:
                hit = c.objs.get(key)
            return json.loads(hit) if hit else None
        kvs = self._call("/v3/kv/range", {"key": b64(self._key(key))}).get("kvs") or []
        return self._decode(kvs[0]) if kvs else None

    def list(self, prefix: str) -> tuple[list[Obj], int]:
        c = self._fresh()
        if c is not None:
            with self._mu:
                rows, rev = self._cached_rows(c, prefix, prefix), c.rev
            return [json.loads(t) for _, t in rows], rev
        k = self._key(prefix)
        out = self._call("/v3/kv/range", {"key": b64(k), "range_end": range_end(k)})
        return [self._decode(kv) for kv in out.get("kvs") or []], int(out["header"]["revision"])

    async def list_page(self, prefix: str, start: str, limit: int, rev: int | None,
                        keep: Callable[[str], bool] | None = None) -> Page:
        """From the cache when it holds rev (its objects with the later events undone), else a
        range read at rev from etcd's MVCC history, TooOld once compacted (410 Expired)."""
        lo = max(prefix, start)
        c = self._fresh()
        if c is not None:
            with self._mu:
                if rev is None or rev >= c.rev:
                    rows = self._cached_rows(c, lo, prefix)
                    if limit <= 0 and keep is None:  # a whole unfiltered LIST (the common case)
                        return Page([t for _, t in rows], c.rev, None, 0)
                    return page_of(rows, c.rev, start, limit, keep)
                if rev >= c.floor and rev >= self._compacted:
                    snap = dict(self._cached_rows(c, lo, prefix))
                    rewind(snap, (e for e in c.log if e.key.startswith(prefix) and e.key >= lo), rev)
                    return page_of(sorted(snap.items()), rev, start, limit, keep)
        body: Obj = {"key": b64(self._key(lo)), "range_end": range_end(self._key(prefix))}
        if rev is not None:
            body["revision"] = str(rev)
        try:
            out = await self._acall("/v3/kv/range", body)
        except _Compacted:
            raise TooOld(rev or 0, self._compacted) from None
        at = rev if rev is not None else int(out["header"]["revision"])
        strip = len(self.root)
        rows = [(unb64(kv["key"])[strip:], json.dumps(self._decode(kv), separators=(",", ":")))
                for kv in out.get("kvs") or []]
        return page_of(rows, at, start, limit, keep)

    @staticmethod
    def _cached_rows(c: _Cache, lo: str, prefix: str) -> list[tuple[str, str]]:
        i = bisect.bisect_left(c.keys, lo)
        rows = []
        while i < len(c.keys) and c.keys[i].startswith(prefix):
            rows.append((c.keys[i], c.objs[c.keys[i]]))
            i += 1
        return rows

    async def _txn(self, key: str, compare: Obj, op: Obj) -> tuple[bool, Obj]:
        k = b64(self._key(key))
        body = {"compare": [{"key": k, **compare}], "success": [op],
                "failure": [{"request_range": {"key": k}}]}
        out = await self._acall("/v3/kv/txn", body)
        return bool(out.get("succeeded")), out

    @staticmethod
    def _exists(out: Obj) -> bool:
        return bool((out.get("responses") or [{}])[0].get("response_range", {}).get("kvs"))

    def _compare_rev(self, expect_rv: str | None) -> Obj:
        if expect_rv:
            return {"target": "MOD", "result": "EQUAL", "mod_revision": str(int(expect_rv))}
        return {"target": "VERSION", "result": "GREATER", "version": "0"}

    async def create(self, key: str, obj: Obj) -> Obj:
        c = self._cache
        raw = self._raw(obj)
        put = {"request_put": {"key": b64(self._key(key)), "value": base64.b64encode(raw).decode()}}
        ok, out = await self._txn(key, {"target": "VERSION", "result": "EQUAL", "version": "0"}, put)
        if not ok:
            raise KeyExists(key)
        rev = int(out["header"]["revision"])
        self._publish(c, Event("ADDED", key, _load(raw, rev), None, rev))
        return _load(raw, rev)

    async def update(self, key: str, obj: Obj, expect_rv: str | None = None) -> Obj:
        c = self._cache
        raw = self._raw(obj)
        put = {"request_put": {"key": b64(self._key(key)), "value": base64.b64encode(raw).decode()}}
        ok, out = await self._txn(key, self._compare_rev(expect_rv), put)
        if not ok:
            raise RevisionMismatch(key) if self._exists(out) else KeyMissing(key)
        rev = int(out["header"]["revision"])
        self._publish(c, Event("MODIFIED", key, _load(raw, rev), None, rev))  # the cache fills in prev
        return _load(raw, rev)

    async def delete(self, key: str, expect_rv: str | None = None) -> Obj:
        c = self._cache
        op = {"request_delete_range": {"key": b64(self._key(key)), "prev_kv": True}}
        ok, out = await self._txn(key, self._compare_rev(expect_rv), op)
        if not ok:
            raise RevisionMismatch(key) if self._exists(out) else KeyMissing(key)
        prev_kvs = out["responses"][0]["response_delete_range"].get("prev_kvs") or []
        if not prev_kvs:
            raise KeyMissing(key)
        rev = int(out["header"]["revision"])
        self._publish(c, Event("DELETED", key, self._decode(prev_kvs[0], rev), self._decode(prev_kvs[0]), rev))
        return self._decode(prev_kvs[0], rev)

    def compact(self, rev: int) -> None:
        """Drop history before rev (as kube-apiserver's compactor does every 5 minutes)."""
        self._call("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        with self._mu:
            self._compacted = max(self._compacted, rev)

    def watch(self, prefix: str, from_rev: int) -> Watch:
        loop = asyncio.get_running_loop()
        c = self._fresh() or self._cache
        if c is None or c.loop is not loop:
            c = self._start_cache(loop)
        with self._mu:
            if from_rev <= 0:
                from_rev = c.rev
            if from_rev < self._compacted:
                raise TooOld(from_rev, self._compacted)
            if from_rev >= c.floor:
                c.drain()  # what is pending reaches the current watchers, the new one replays it
                w = Watch(prefix)
                for ev in c.log:
                    if ev.rev > from_rev and ev.key.startswith(prefix):
                        w.queue.put_nowait(ev)
                c.subs[w] = from_rev
                return w
        return self._watch_etcd(prefix, from_rev)

    def _watch_etcd(self, prefix: str, from_rev: int) -> Watch:
        """A watch older than the cache's window: its own etcd stream, or TooOld if compacted."""
        k = self._key(prefix)
        try:  # reading the prefix at from_rev fails exactly when that history was compacted
            self._call("/v3/kv/range", {"key": b64(k), "range_end": range_end(k), "count_only": True,
                                        "revision": str(from_rev)})
        except _Compacted:
            raise TooOld(from_rev, self._compact_floor(k)) from None
        except _Future:
            pass  # a revision we have not reached yet: events after it arrive when they happen
        w = Watch(prefix)
        strip = len(self.root)

        def on_event(ev: Obj) -> None:
            w.queue.put_nowait(self._event(ev, strip))

        async def run() -> None:
            try:
                await self._stream_from(k, from_rev + 1, on_event)
            finally:
                self._watches.pop(w, None)
                w.queue.put_nowait(None)  # the HTTP watch ends; its client re-watches from its last rv

        self._watches[w] = asyncio.get_running_loop().create_task(run())
        return w

    def _compact_floor(self, k: str) -> int:
        try:
            out = self._call("/v3/kv/range", {"key": b64(self._key("/")), "count_only": True})
            return int(out["header"]["revision"])
        except EtcdUnavailable:
            return 0

    async def _stream_from(self, k: str, start: int, on_event, prev_kv: bool = True) -> None:  # type: ignore[no-untyped-def]
        """Stream /v3/watch on prefix k from revision start, calling on_event per etcd event."""
        body = {"create_request": {"key": b64(k), "range_end": range_end(k), "start_revision": str(start),
                                   "prev_kv": prev_kv}}
        self.streams_opened += 1
        try:
            async with aiohttp.ClientSession() as s, s.post(
                self.endpoint + "/v3/watch", json=body, timeout=aiohttp.ClientTimeout(total=None)
            ) as resp:
                pending = b""
                async for chunk in resp.content.iter_any():
                    # the gateway ends every WatchResponse with a newline; split once per chunk so a
                    # backlog of many messages costs linear time
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        if not line.strip():
                            continue
                        msg = json.loads(line)
                        result = msg.get("result") or {}
                        if result.get("canceled") or msg.get("error"):
                            log.info("etcd watch on %s ended: %s", k, result or msg)
                            return
                        for ev in result.get("events") or []:
                            on_event(ev)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError, ValueError) as e:
            log.warning("etcd watch on %s failed: %s", k, e)

    def _event(self, ev: Obj, strip: int) -> Event:
        """The Event for an etcd watch event."""
        kv, prev_kv = ev["kv"], ev.get("prev_kv")
        key = unb64(kv["key"])[strip:]
        rev = int(kv["mod_revision"])
        prev = self._decode(prev_kv) if prev_kv else None
        if ev.get("type") == "DELETE":  # PUT is the enum's zero value and so omitted in JSON
            obj = dict(prev or {"metadata": {"name": key.rsplit("/", 1)[-1]}})
            obj["metadata"] = {**obj.get("metadata", {}), "resourceVersion": str(rev)}
            return Event("DELETED", key, obj, prev, rev)
        etype = "ADDED" if kv.get("version") == "1" else "MODIFIED"
        return Event(etype, key, self._decode(kv), prev, rev)

    def unwatch(self, w: Watch) -> None:
        task = self._watches.pop(w, None)
        if task is not None:
            task.cancel()
        with self._mu:
            c = self._cache
            if c is not None:
                c.subs.pop(w, None)

    def close(self) -> None:
        c = self._cache
        if c is not None:
            self._end_cache(c)
        for w, task in list(self._watches.items()):
            task.cancel()
            w.queue.put_nowait(None)
        self._watches.clear()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._pool.close()


class _Compacted(Exception):
    pass


class _Future(Exception):
    pass


def etcd_store_from(endpoints: str, root: str = "") -> EtcdStore:
    """The first of a comma-separated --etcd-endpoints list (one member is all netkube uses)."""
    first = endpoints.split(",")[0].strip()
    return EtcdStore(first, root)
