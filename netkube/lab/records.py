"""The record of every host object a cluster created, so cleanup removes exactly those.

One JSON object per line in <state_dir>/records.jsonl, appended under an flock so the CLI, the
server and every node agent (separate processes) can write to it safely. Kinds:

  {"kind": "netns",   "name": "netkube-node1"}
  {"kind": "process", "pid": 1234, "start": 98765, "what": "agent node1"}
  {"kind": "mount",   "path": "/run/..."}
  {"kind": "path",    "path": "/var/lib/netkube/x/..."}       (file or dir to remove)
  {"kind": "cgroup",  "path": "/sys/fs/cgroup/memory/netkube/...", "pod": "<uid>"}  (rmdir, deepest first)

A process is identified by pid AND its start time (field 22 of /proc/PID/stat), so a recycled pid
is never signalled. Removal is idempotent: objects already gone are skipped.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot, or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


@dataclass(frozen=True)
class Record:
    kind: str
    data: dict[str, Any]

    def key(self) -> tuple[str, str]:
        if self.kind == "netns":
            return ("netns", self.data["name"])
        if self.kind == "process":
            return ("process", f"{self.data['pid']}:{self.data['start']}")
        return (self.kind, str(self.data.get("path") or self.data.get("name")))


class Records:
    """Append-only record file shared by every netkube process of one cluster."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + "\n"
        with open(self.path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.write(line)
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def add(self, kind: str, **data: Any) -> None:
        self._append({"kind": kind, **data})

    def forget(self, kind: str, **data: Any) -> None:
        """Note that an object was removed by its owner (keeps the file from growing stale)."""
        self._append({"kind": kind, "removed": True, **data})

    def add_netns(self, name: str) -> None:
        self.add("netns", name=name)

    def add_process(self, pid: int, what: str) -> None:
        start = process_start_time(pid)
        if start is not None:
            self.add("process", pid=pid, start=start, what=what)

    def forget_process(self, pid: int, start: int | None = None) -> None:
        if start is None:
            start = process_start_time(pid)
        if start is not None:
            self.forget("process", pid=pid, start=start)

    def entries(self) -> Iterator[dict[str, Any]]:
        try:
            with open(self.path) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError:
                            continue  # a torn last line after SIGKILL
        except FileNotFoundError:
            return

    def live(self) -> list[Record]:
        """Objects recorded and not yet forgotten, in creation order."""
        current: dict[tuple[str, str], Record] = {}
        for entry in self.entries():
            entry = dict(entry)
            kind = entry.pop("kind")
            removed = entry.pop("removed", False)
            rec = Record(kind, entry)
            if removed:
                current.pop(rec.key(), None)
            else:
                current.pop(rec.key(), None)
                current[rec.key()] = rec
        return list(current.values())
