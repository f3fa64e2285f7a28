"""Reading a container's log file with the pods/log options (tailLines, limitBytes, follow, since)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 32 * 1024
POLL = 0.2  # follow polls the file: the container writes it directly, so there is no pipe to watch


class BadLogOptions(ValueError):
    """A query parameter is malformed; the message is the 400 text."""


@dataclass
class LogOptions:
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    timestamps: bool = False

    @classmethod
    def from_query(cls, q: dict[str, str] | object) -> LogOptions:
        get = q.get  # type: ignore[attr-defined]

        def flag(name: str) -> bool:
            return get(name, "false").lower() in ("true", "1")

        def num(name: str, minimum: int) -> int | None:
            raw = get(name)
            if raw in (None, ""):
                return None
            try:
                v = int(raw)
            except ValueError:
                raise BadLogOptions(f"{name}: invalid integer {raw!r}") from None
            if v < minimum:
                raise BadLogOptions(f"{name}: must be at least {minimum}")
            return v

        return cls(follow=flag("follow"), previous=flag("previous"), tail_lines=num("tailLines", 0),
                   limit_bytes=num("limitBytes", 1), since_seconds=num("sinceSeconds", 1),
                   timestamps=flag("timestamps"))


def tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last `lines` lines start (reading backwards in blocks)."""
    size = path.stat().st_size
    if lines == 0:
        return size
    with path.open("rb") as f:
        pos, found = size, 0
        # A final line without newline still counts as a line, as upstream's tail does.
        f.seek(max(0, size - 1))
        if size and f.read(1) == b"\n":
            pos -= 1
        while pos > 0:
            start = max(0, pos - CHUNK)
            f.seek(start)
            block = f.read(pos - start)
            idx = len(block)
            while True:
                idx = block.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                found += 1
                if found == lines:
                    return start + idx + 1
            pos = start
    return 0


async def read_log(path: Path, opts: LogOptions, alive: Callable[[], bool]) -> AsyncIterator[bytes]:
    """Yield the log's bytes; with follow keep yielding until the container instance is gone."""
    if opts.since_seconds is not None:
        # Lines carry no timestamps; a file untouched for longer than the window has nothing newer.
        try:
            if time.time() - path.stat().st_mtime > opts.since_seconds and not opts.follow:
                return
        except FileNotFoundError:
            return
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    budget = opts.limit_bytes
    with f:
        ino = os.fstat(f.fileno()).st_ino
        if opts.tail_lines is not None:
            f.seek(tail_offset(path, opts.tail_lines))
        while True:
            data = f.read(CHUNK if budget is None else min(CHUNK, budget))
            if data:
                if budget is not None:
                    budget -= len(data)
                yield data
                if budget == 0:
                    return
                continue
            if not opts.follow:
                return
            if not alive() or _rotated(path, ino):
                rest = f.read() if budget is None else f.read(budget)
                if rest:
                    yield rest
                return
            await asyncio.sleep(POLL)


def _rotated(path: Path, ino: int) -> bool:
    try:
        return path.stat().st_ino != ino  # the container restarted: this instance's log is complete
    except FileNotFoundError:
        return True


def previous_log(path: Path) -> Path:
    """Where the previous instance's log is kept (container names have no dots, so no clash)."""
    return path.with_name(path.stem + ".previous.log")
