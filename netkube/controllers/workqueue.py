"""A deduplicating work queue of object keys with per-key serialisation and retry backoff.

As client-go's workqueue: a key queued many times before a worker takes it is processed once, and
a key is never processed by two workers at once (a change during processing re-queues it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, name: str, max_backoff: float = 10.0) -> None:
        self.name = name
        self.max_backoff = max_backoff
        self._queue: asyncio.Queue[str] | None = None
        self._pending: set[str] = set()  # queued, not yet taken
        self._active: set[str] = set()  # being processed now
        self._dirty: set[str] = set()  # added again while active
        self._failures: dict[str, int] = {}
        self._early: list[str] = []  # keys added before run() created the queue

    def add(self, key: str) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._pending:
            return
        self._pending.add(key)
        if self._queue is None:
            self._early.append(key)
        else:
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def run(self, sync: Callable[[str], Awaitable[None]], workers: int = 2) -> None:
        self._queue = asyncio.Queue()
        for key in self._early:
            self._queue.put_nowait(key)
        self._early.clear()
        await asyncio.gather(*(self._worker(sync) for _ in range(workers)))

    async def _worker(self, sync: Callable[[str], Awaitable[None]]) -> None:
        assert self._queue is not None
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            self._active.add(key)
            try:
                await sync(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # A failed sync never kills the controller: log and retry with exponential backoff.
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = min(0.05 * 2**n, self.max_backoff)
                level = logging.INFO if n < 5 else logging.WARNING
                log.log(level, "%s: sync %s failed (attempt %d, retry in %.2fs): %s", self.name, key, n, delay, e,
                        exc_info=n >= 5)
                self.add_after(key, delay)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
