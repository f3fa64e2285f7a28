"""The storage interface the apiserver uses: keyed JSON objects, one global revision, watch."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = dict[str, Any]


class KeyExists(Exception):
    """create() found an object under the key."""


class KeyMissing(Exception):
    """update()/delete() found no object under the key."""


class RevisionMismatch(Exception):
    """The caller's expected resourceVersion is not the stored one."""


class TooOld(Exception):
    """The requested watch revision is older than the retained event log (410 Gone, Expired)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested, self.oldest = requested, oldest


@dataclass
class Event:
    type: str  # ADDED, MODIFIED or DELETED
    key: str
    obj: Obj
    prev: Obj | None
    rev: int
    # encoded watch lines by event type, shared by every watcher the event reaches (watch.py)
    lines: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(eq=False)  # identity semantics: watches live in sets
class Watch:
    """A subscription to events under a key prefix; events arrive on queue, None means closed."""

    prefix: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


@dataclass
class Page:
    """One chunk of a paginated LIST, read at one revision (every chunk of a list shares it)."""

    items: list[str]  # JSON texts, resourceVersion included
    rev: int
    last_key: str | None  # the last key examined when more follow (the continue point), else None
    remaining: int  # objects after this chunk in the same snapshot


def page_of(rows: list[tuple[str, str]], rev: int, start: str, limit: int,
            keep: Callable[[str], bool] | None = None) -> Page:
    """Up to limit rows (key-sorted (key, json)) with key >= start that keep() accepts; the snapshot
    is rows itself, so later chunks read from the same revision see the same objects."""
    i = bisect.bisect_left(rows, (start, ""))
    out: list[str] = []
    while i < len(rows) and (limit <= 0 or len(out) < limit):
        if keep is None or keep(rows[i][1]):
            out.append(rows[i][1])
        i += 1
    more = i < len(rows)
    return Page(out, rev, rows[i - 1][0] if more and i > 0 else None, len(rows) - i if more else 0)


def rewind(rows: dict[str, str], events: Iterable[Event], rev: int) -> None:
    """Undo, newest first, the events after rev on rows (key -> JSON text): the objects as of rev."""
    for ev in sorted((e for e in events if e.rev > rev), key=lambda e: e.rev, reverse=True):
        if ev.type == "ADDED" or ev.prev is None:
            rows.pop(ev.key, None)
        else:
            rows[ev.key] = json.dumps(ev.prev, separators=(",", ":"))


class KeyLocks:
    """asyncio locks by key, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Store(Protocol):
    """Reads are synchronous (served from memory or a local file); writes are coroutines so a
    store that waits on the network (etcd) keeps the event loop free while a write is in flight."""

    def revision(self) -> int: ...

    def get(self, key: str) -> Obj | None: ...

    def list(self, prefix: str) -> tuple[list[Obj], int]:
        """All objects under prefix (sorted by key) and the revision they were read at."""
        ...

    async def list_page(self, prefix: str, start: str, limit: int, rev: int | None,
                        keep: Callable[[str], bool] | None = None) -> Page:
        """A LIST chunk: keys >= start under prefix, as of rev (None: now); TooOld once that revision
        is no longer available (upstream's 410 Expired for a continue token)."""
        ...

    async def create(self, key: str, obj: Obj) -> Obj:
        """Store obj with a new revision written into metadata.resourceVersion; KeyExists if taken."""
        ...

    async def update(self, key: str, obj: Obj, expect_rv: str | None = None) -> Obj: ...

    async def delete(self, key: str, expect_rv: str | None = None) -> Obj:
        """Remove and return the object; the DELETED event carries a fresh revision."""
        ...

    def watch(self, prefix: str, from_rev: int) -> Watch:
        """Replay retained events newer than from_rev, then stream live ones; TooOld if unavailable."""
        ...

    def unwatch(self, w: Watch) -> None: ...

    def close(self) -> None:
        """End every watch (a None on each queue) and release the backend."""
        ...
