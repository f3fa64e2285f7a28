"""SqliteStore: objects, the revision counter and a bounded event log (for watch resumption) in sqlite."""

from __future__ import annotations

import collections
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from .store import Event, KeyExists, KeyMissing, Obj, Page, RevisionMismatch, TooOld, Watch, page_of, rewind


class SqliteStore:
    """Single-writer store used from the apiserver's event loop thread (its writes are coroutines
    only to match the Store protocol: a WAL commit without fsync is short enough to run inline).

    Every write bumps one global revision (like etcd's) and records an event; watchers replay
    retained events and then follow live ones. The last log_size events are also kept in an
    `events` table written in the same transaction as the object, so after a restart a watch
    resumes from any retained revision, as it would on etcd; older ones get TooOld (410).
    """

    def __init__(self, path: str | Path, log_size: int = 10000) -> None:
        self.path = str(path)
        self.log_size = log_size
        self._db: sqlite3.Connection | None = None
        self._rev = 0
        self._log: collections.deque[Event] = collections.deque(maxlen=log_size)
        self._log_floor = 0  # events with rev > floor are all retained
        self._watches: list[Watch] = []

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, rev INTEGER, data TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER)")
            self._db.execute("CREATE TABLE IF NOT EXISTS events (rev INTEGER PRIMARY KEY, type TEXT, key TEXT, "
                             "obj TEXT, prev TEXT)")
            row = self._db.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
            self._rev = int(row[0]) if row else 1
            self._load_log()
        return self._db

    def _load_log(self) -> None:
        """Refill the in-memory log from the events table; the floor is the revision before the
        oldest retained event (or the current one when the table is empty, e.g. an older db)."""
        rows = self.db.execute("SELECT rev, type, key, obj, prev FROM events ORDER BY rev DESC LIMIT ?",
                               (self.log_size,)).fetchall()
        rows.reverse()
        self._log.clear()
        for rev, etype, key, obj, prev in rows:
            self._log.append(Event(etype, key, json.loads(obj), json.loads(prev) if prev else None, rev))
        self._log_floor = rows[0][0] - 1 if rows else self._rev

    def revision(self) -> int:
        self.db  # noqa: B018 - opening loads the counter
        return self._rev

    def get(self, key: str) -> Obj | None:
        row = self.db.execute("SELECT data FROM objects WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, prefix: str) -> tuple[list[Obj], int]:
        # a range scan [prefix, prefix + 0xff) lists one subtree without LIKE escaping
        rows = self.db.execute(
            "SELECT data FROM objects WHERE key >= ? AND key < ? ORDER BY key", (prefix, prefix + "\uffff")
        ).fetchall()
        return [json.loads(r[0]) for r in rows], self._rev

    async def list_page(self, prefix: str, start: str, limit: int, rev: int | None,
                        keep: Callable[[str], bool] | None = None) -> Page:
        """The chunk as of rev: the current rows with the retained events after rev undone (no
        MVCC in sqlite; the event log is the history), TooOld when rev is older than the log."""
        now = self.revision()
        if rev is not None and rev < now and rev < self._log_floor:
            raise TooOld(rev, self._log_floor + 1)
        if limit <= 0 and keep is None and (rev is None or rev >= now) and start <= prefix:
            # a whole unfiltered LIST (the common case): the JSON texts alone
            texts = self.db.execute("SELECT data FROM objects WHERE key >= ? AND key < ? ORDER BY key",
                                    (prefix, prefix + "\uffff")).fetchall()
            return Page([t for (t,) in texts], now, None, 0)
        rows = self.db.execute(
            "SELECT key, data FROM objects WHERE key >= ? AND key < ? ORDER BY key",
            (max(prefix, start), prefix + "\uffff")).fetchall()
        if rev is None or rev >= now:
            return page_of(rows, now, start, limit, keep)
        snap = dict(rows)
        rewind(snap, (e for e in self._log if e.key.startswith(prefix) and e.key >= start), rev)
        return page_of(sorted(snap.items()), rev, start, limit, keep)

    def _write(self, key: str, obj: Obj | None, etype: str, prev: Obj | None) -> Obj:
        db = self.db
        rev = self._rev + 1
        out = obj if obj is not None else dict(prev or {})
        out = json.loads(json.dumps(out))
        out.setdefault("metadata", {})["resourceVersion"] = str(rev)
        db.execute("BEGIN IMMEDIATE")
        try:
            if obj is None:
                db.execute("DELETE FROM objects WHERE key=?", (key,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO objects (key, rev, data) VALUES (?, ?, ?)",
                    (key, rev, json.dumps(out, separators=(",", ":"))),
                )
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('revision', ?)", (rev,))
            db.execute("INSERT INTO events (rev, type, key, obj, prev) VALUES (?, ?, ?, ?, ?)",
                       (rev, etype, key, json.dumps(out, separators=(",", ":")),
                        json.dumps(prev, separators=(",", ":")) if prev is not None else None))
            if rev % 64 == 0:  # trim in batches; the table keeps at least log_size events
                db.execute("DELETE FROM events WHERE rev <= ?", (rev - self.log_size,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._rev = rev
        ev = Event(etype, key, out, prev, rev)
        if len(self._log) == self._log.maxlen:
            self._log_floor = self._log[0].rev
        self._log.append(ev)
        for w in list(self._watches):
            if key.startswith(w.prefix):
                w.queue.put_nowait(ev)
        return out

    async def create(self, key: str, obj: Obj) -> Obj:
        if self.get(key) is not None:
            raise KeyExists(key)
        return self._write(key, obj, "ADDED", None)

    async def update(self, key: str, obj: Obj, expect_rv: str | None = None) -> Obj:
        prev = self.get(key)
        if prev is None:
            raise KeyMissing(key)
        if expect_rv and prev["metadata"].get("resourceVersion") != expect_rv:
            raise RevisionMismatch(key)
        return self._write(key, obj, "MODIFIED", prev)

    async def delete(self, key: str, expect_rv: str | None = None) -> Obj:
        prev = self.get(key)
        if prev is None:
            raise KeyMissing(key)
        if expect_rv and prev["metadata"].get("resourceVersion") != expect_rv:
            raise RevisionMismatch(key)
        return self._write(key, None, "DELETED", prev)

    def watch(self, prefix: str, from_rev: int) -> Watch:
        self.db  # noqa: B018
        if from_rev < self._log_floor and from_rev < self._rev:
            raise TooOld(from_rev, self._log_floor + 1)
        w = Watch(prefix)
        for ev in self._log:
            if ev.rev > from_rev and ev.key.startswith(prefix):
                w.queue.put_nowait(ev)
        self._watches.append(w)
        return w

    def unwatch(self, w: Watch) -> None:
        if w in self._watches:
            self._watches.remove(w)

    def close(self) -> None:
        for w in self._watches:
            w.queue.put_nowait(None)
        self._watches.clear()
        if self._db is not None:
            self._db.close()
            self._db = None
