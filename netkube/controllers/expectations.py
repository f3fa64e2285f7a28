"""Creations and deletions a controller has made but its informer has not seen yet.

Without this a sync that runs before the watch delivers the pods it just created would create them
again (upstream ControllerExpectations); expectations expire so a lost event cannot wedge a key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

EXPECTATION_TTL = 30.0  # seconds; upstream uses 5 minutes, a local emulator recovers faster


@dataclass
class _Pending:
    adds: set[str] = field(default_factory=set)
    dels: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


class Expectations:
    def __init__(self, ttl: float = EXPECTATION_TTL) -> None:
        self.ttl = ttl
        self._by_key: dict[str, _Pending] = {}

    def expect(self, key: str, adds: set[str] | None = None, dels: set[str] | None = None) -> None:
        p = self._by_key.setdefault(key, _Pending())
        p.adds |= adds or set()
        p.dels |= dels or set()
        p.since = time.monotonic()

    def observe_add(self, key: str, name: str) -> None:
        if key in self._by_key:
            self._by_key[key].adds.discard(name)

    def observe_delete(self, key: str, name: str) -> None:
        if key in self._by_key:
            self._by_key[key].dels.discard(name)

    def satisfied(self, key: str) -> bool:
        p = self._by_key.get(key)
        if p is None or (not p.adds and not p.dels):
            return True
        return time.monotonic() - p.since > self.ttl

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)
