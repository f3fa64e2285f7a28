"""The storage interface the apiserver uses: keyed JSON objects, one global revision, watch."""

from __future__ import annotations

import asyncio
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


class Store(Protocol):
    def revision(self) -> int: ...

    def get(self, key: str) -> Obj | None: ...

    def list(self, prefix: str) -> tuple[list[Obj], int]:
        """All objects under prefix (sorted by key) and the revision they were read at."""
        ...

    def list_json(self, prefix: str) -> tuple[list[str], int] | None:
        """Like list, but each object as its JSON text (resourceVersion included), for LIST
        responses without decoding and re-encoding every object; None: use list() instead."""
        ...

    def create(self, key: str, obj: Obj) -> Obj:
        """Store obj with a new revision written into metadata.resourceVersion; KeyExists if taken."""
        ...

    def update(self, key: str, obj: Obj, expect_rv: str | None = None) -> Obj: ...

    def delete(self, key: str, expect_rv: str | None = None) -> Obj:
        """Remove and return the object; the DELETED event carries a fresh revision."""
        ...

    def watch(self, prefix: str, from_rev: int) -> Watch:
        """Replay retained events newer than from_rev, then stream live ones; TooOld if unavailable."""
        ...

    def unwatch(self, w: Watch) -> None: ...

    def close(self) -> None:
        """End every watch (a None on each queue) and release the backend."""
        ...
