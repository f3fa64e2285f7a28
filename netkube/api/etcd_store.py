"""EtcdStore: the Store protocol on etcd v3 through its gRPC-gateway JSON API (/v3/kv/*, /v3/watch)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import threading
from urllib.parse import urlsplit

import aiohttp

from .store import Event, KeyExists, KeyMissing, Obj, RevisionMismatch, TooOld, Watch

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


class EtcdStore:
    """Objects as JSON values under root+key; resourceVersion is etcd's mod_revision, as upstream.

    The Store protocol is synchronous (the registry calls it from the apiserver's event loop, as it
    calls sqlite), so KV calls use one keep-alive HTTP/1.1 connection; each call is a single
    round trip on loopback. Watches are asyncio tasks streaming /v3/watch with aiohttp.
    """

    def __init__(self, endpoint: str, root: str = "", timeout: float = 10.0) -> None:
        u = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"--etcd-endpoints {endpoint!r}: give a plain http URL such as http://127.0.0.1:2379")
        self.endpoint = f"http://{u.hostname}:{u.port or 2379}"
        self.root = root.rstrip("/")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # ThreadedApiServer tests may call in from another thread
        self._watches: dict[Watch, asyncio.Task[None]] = {}

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
        out: Obj = json.loads(text) if text else {}
        if resp.status != 200:
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
        obj: Obj = json.loads(base64.b64decode(kv.get("value", "")) or b"{}")
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev or int(kv["mod_revision"]))
        return obj

    @staticmethod
    def _encode(obj: Obj) -> str:
        # upstream stores objects without resourceVersion and sets it from mod_revision on read
        md = obj.get("metadata") or {}
        stored = {**obj, "metadata": {k: v for k, v in md.items() if k != "resourceVersion"}}
        return base64.b64encode(json.dumps(stored, separators=(",", ":")).encode()).decode()

    # --- Store protocol -----------------------------------------------------------------------
    def revision(self) -> int:
        out = self._call("/v3/kv/range", {"key": b64(self._key("/")), "count_only": True})
        return int(out["header"]["revision"])

    def get(self, key: str) -> Obj | None:
        kvs = self._call("/v3/kv/range", {"key": b64(self._key(key))}).get("kvs") or []
        return self._decode(kvs[0]) if kvs else None

    def list(self, prefix: str) -> tuple[list[Obj], int]:
        k = self._key(prefix)
        out = self._call("/v3/kv/range", {"key": b64(k), "range_end": range_end(k)})
        return [self._decode(kv) for kv in out.get("kvs") or []], int(out["header"]["revision"])

    def _txn(self, key: str, compare: Obj, op: Obj) -> tuple[bool, Obj]:
        k = b64(self._key(key))
        body = {"compare": [{"key": k, **compare}], "success": [op],
                "failure": [{"request_range": {"key": k}}]}
        out = self._call("/v3/kv/txn", body)
        return bool(out.get("succeeded")), out

    @staticmethod
    def _exists(out: Obj) -> bool:
        return bool((out.get("responses") or [{}])[0].get("response_range", {}).get("kvs"))

    def _compare_rev(self, expect_rv: str | None) -> Obj:
        if expect_rv:
            return {"target": "MOD", "result": "EQUAL", "mod_revision": str(int(expect_rv))}
        return {"target": "VERSION", "result": "GREATER", "version": "0"}

    def create(self, key: str, obj: Obj) -> Obj:
        put = {"request_put": {"key": b64(self._key(key)), "value": self._encode(obj)}}
        ok, out = self._txn(key, {"target": "VERSION", "result": "EQUAL", "version": "0"}, put)
        if not ok:
            raise KeyExists(key)
        return self._result(obj, out)

    def update(self, key: str, obj: Obj, expect_rv: str | None = None) -> Obj:
        put = {"request_put": {"key": b64(self._key(key)), "value": self._encode(obj)}}
        ok, out = self._txn(key, self._compare_rev(expect_rv), put)
        if not ok:
            raise RevisionMismatch(key) if self._exists(out) else KeyMissing(key)
        return self._result(obj, out)

    def delete(self, key: str, expect_rv: str | None = None) -> Obj:
        op = {"request_delete_range": {"key": b64(self._key(key)), "prev_kv": True}}
        ok, out = self._txn(key, self._compare_rev(expect_rv), op)
        if not ok:
            raise RevisionMismatch(key) if self._exists(out) else KeyMissing(key)
        prev = out["responses"][0]["response_delete_range"].get("prev_kvs") or []
        if not prev:
            raise KeyMissing(key)
        return self._decode(prev[0], int(out["header"]["revision"]))

    @staticmethod
    def _result(obj: Obj, out: Obj) -> Obj:
        res: Obj = json.loads(json.dumps(obj))
        res.setdefault("metadata", {})["resourceVersion"] = str(out["header"]["revision"])
        return res

    def compact(self, rev: int) -> None:
        """Drop history before rev (as kube-apiserver's compactor does every 5 minutes)."""
        self._call("/v3/kv/compaction", {"revision": str(rev), "physical": True})

    def watch(self, prefix: str, from_rev: int) -> Watch:
        k = self._key(prefix)
        if from_rev <= 0:
            from_rev = self.revision()
        try:  # reading the prefix at from_rev fails exactly when that history was compacted
            self._call("/v3/kv/range", {"key": b64(k), "range_end": range_end(k), "count_only": True,
                                        "revision": str(from_rev)})
        except _Compacted:
            raise TooOld(from_rev, self._compact_floor(k)) from None
        except _Future:
            pass  # a revision we have not reached yet: events after it arrive when they happen
        w = Watch(prefix)
        self._watches[w] = asyncio.get_running_loop().create_task(self._stream(w, k, from_rev + 1))
        return w

    def _compact_floor(self, k: str) -> int:
        try:
            return self.revision()
        except EtcdUnavailable:
            return 0

    async def _stream(self, w: Watch, k: str, start: int) -> None:
        body = {"create_request": {"key": b64(k), "range_end": range_end(k), "start_revision": str(start),
                                   "prev_kv": True}}
        strip = len(self.root)
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
                            w.queue.put_nowait(self._event(ev, strip))
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError, ValueError) as e:
            log.warning("etcd watch on %s failed: %s", k, e)
        finally:
            self._watches.pop(w, None)
            w.queue.put_nowait(None)  # the HTTP watch ends; its client re-watches from its last rv

    def _event(self, ev: Obj, strip: int) -> Event:
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

    def close(self) -> None:
        for w, task in list(self._watches.items()):
            task.cancel()
            w.queue.put_nowait(None)
        self._watches.clear()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class _Compacted(Exception):
    pass


class _Future(Exception):
    pass


def etcd_store_from(endpoints: str, root: str = "") -> EtcdStore:
    """The first of a comma-separated --etcd-endpoints list (one member is all netkube uses)."""
    first = endpoints.split(",")[0].strip()
    return EtcdStore(first, root)
