"""Remove exactly what a cluster recorded: processes, then namespaces, mounts and paths."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from netkube.lab.records import Record, Records, process_start_time

log = logging.getLogger(__name__)


def _alive(rec: Record) -> bool:
    return process_start_time(rec.data["pid"]) == rec.data["start"]


def stop_processes(procs: list[Record], grace: float = 3.0) -> None:
    """SIGTERM every recorded process that is still the same process, then SIGKILL stragglers."""
    live = [p for p in procs if _alive(p)]
    for p in live:
        try:
            os.kill(p.data["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [p for p in live if _alive(p)]
    for p in live:
        try:
            os.kill(p.data["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while live and time.monotonic() < deadline:
        time.sleep(0.02)
        live = [p for p in live if _alive(p)]


def delete_netns(name: str) -> None:
    if not Path(f"/var/run/netns/{name}").exists():
        return
    proc = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True)
    if proc.returncode != 0 and Path(f"/var/run/netns/{name}").exists():
        log.warning("could not delete netns %s: %s", name, proc.stderr.strip())


def unmount(path: str) -> None:
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", path], capture_output=True)


def remove_recorded(records: Records, grace: float = 3.0) -> dict[str, int]:
    """Remove every live record, newest first within each kind. Returns counts per kind."""
    # Processes first, then the records read again: an agent still running while it is stopped may
    # record what it has just made (the netns of a pod mid-creation, a pause process).
    stopped: set[tuple[object, object]] = set()
    for _ in range(5):
        procs = [r for r in records.live() if r.kind == "process" and (r.data.get("pid"), r.data.get("start")) not in stopped]
        if not procs:
            break
        stop_processes(procs, grace)
        stopped.update((r.data.get("pid"), r.data.get("start")) for r in procs)
    counts: dict[str, int] = {"process": len(stopped)}
    for rec in reversed(records.live()):
        if rec.kind == "mount":
            unmount(rec.data["path"])
        elif rec.kind == "netns":
            delete_netns(rec.data["name"])
        elif rec.kind == "cgroup":
            from netkube.kubelet.cgroups import remove_cgroup

            remove_cgroup(rec.data["path"])
        elif rec.kind == "path":
            p = Path(rec.data["path"])
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists() or p.is_symlink():
                p.unlink(missing_ok=True)
        counts[rec.kind] = counts.get(rec.kind, 0) + (0 if rec.kind == "process" else 1)
    return counts
