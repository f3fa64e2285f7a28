"""Watch streams: newline-delimited {"type","object"} events, filtered, optionally as Tables."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .resources import Kind
from .store import Event, Store, TooOld, Watch
from .tables import table

Obj = dict[str, Any]
BOOKMARK_INTERVAL = 30.0  # upstream sends bookmarks roughly once a minute; more often is harmless
POLL = 2.0  # how often an idle stream checks that its client is still there


def classify(ev: Event, match: Callable[[Obj], bool]) -> str | None:
    """Upstream's filtered watch: an object leaving the selection is DELETED, entering it ADDED."""
    if ev.type == "ADDED":
        return "ADDED" if match(ev.obj) else None
    if ev.type == "DELETED":
        return "DELETED" if match(ev.obj) else None
    new_ok, old_ok = match(ev.obj), ev.prev is not None and match(ev.prev)
    if new_ok and old_ok:
        return "MODIFIED"
    if new_ok:
        return "ADDED"
    return "DELETED" if old_ok else None


class WatchStream:
    def __init__(self, store: Store, kind: Kind, prefix: str, match: Callable[[Obj], bool],
                 as_table: bool, include: str, bookmarks: bool, timeout: float,
                 active: set[Watch]) -> None:
        self.store, self.kind, self.prefix, self.match = store, kind, prefix, match
        self.as_table, self.include, self.bookmarks, self.timeout = as_table, include, bookmarks, timeout
        self.active = active

    def _line(self, etype: str, obj: Obj) -> bytes:
        if self.as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
            obj = table(self.kind.kind, [obj], obj["metadata"].get("resourceVersion", ""), self.include)
        return (json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n").encode()

    async def serve(self, request: web.Request, rv: str | None) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                        "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        initial: list[Obj] = []
        try:
            if rv in (None, "", "0"):
                # like the real apiserver: synthetic ADDED for what exists, then changes after it
                items, rev = self.store.list(self.prefix)
                initial = [o for o in items if self.match(o)]
                w = self.store.watch(self.prefix, rev)
            else:
                w = self.store.watch(self.prefix, int(rv))
        except TooOld as e:
            await resp.prepare(request)
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": str(e), "reason": "Expired", "code": 410}
            await resp.write(self._line("ERROR", status))
            await resp.write_eof()
            return resp
        self.active.add(w)
        try:
            await resp.prepare(request)
            for o in initial:
                await resp.write(self._line("ADDED", o))
            await self._pump(request, resp, w)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
            pass  # client went away or the server is stopping
        finally:
            self.active.discard(w)
            self.store.unwatch(w)
        return resp

    async def _pump(self, request: web.Request, resp: web.StreamResponse, w: Watch) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        last_bookmark = loop.time()
        while (remaining := deadline - loop.time()) > 0:
            try:
                ev = await asyncio.wait_for(w.queue.get(), timeout=min(remaining, POLL))
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    return
                if self.bookmarks and loop.time() - last_bookmark >= BOOKMARK_INTERVAL:
                    last_bookmark = loop.time()
                    mark = {"kind": self.kind.kind, "apiVersion": self.kind.api_version,
                            "metadata": {"resourceVersion": str(self.store.revision())}}
                    await resp.write(self._line("BOOKMARK", mark))
                continue
            if ev is None:
                return
            etype = classify(ev, self.match)
            if etype is None:
                continue
            if self.as_table:
                await resp.write(self._line(etype, ev.obj))
                continue
            line = ev.lines.get(etype)  # encoded once for all the watchers this event reaches
            if line is None:
                line = ev.lines[etype] = self._line(etype, ev.obj)
            await resp.write(line)
