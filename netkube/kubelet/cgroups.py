"""Pod and container cgroups for the process runtime, in the kubelet's cgroupfs-driver layout.

    <mount>/netkube/<cluster>/<node>/kubepods[/burstable|/besteffort]/pod<uid>/<container>

Guaranteed pods sit directly under kubepods, as upstream. cgroup v2 (one unified tree with the
memory, cpu and pids controllers) is used when it has them, else v1 (a tree per controller);
detect() says why neither works, and the kubelet then runs pods without limits. Every directory
this module makes is recorded (kind "cgroup") before anything is put in it, and removed from the
records it made: a container's after it exits, a pod's on delete, all of them on `netkube down`.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netkube.kubelet.status import qos_class
from netkube.lab.records import Records
from netkube.scheduler.resources import quantity

log = logging.getLogger(__name__)
Obj = dict[str, Any]

CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000  # upstream's default cfs period
MIN_QUOTA_US = 1_000  # the kernel refuses less
MIN_SHARES, MAX_SHARES = 2, 262_144
DEFAULT_POD_PIDS = 4096  # a fork bomb in one pod must not take the shared lab machine down


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    cpu_limit: int | None = None  # millicores: the CFS quota
    cpu_request: int | None = None  # millicores: the shares / weight; None is BestEffort's minimum
    pids: int | None = None


def _milli(value: Any) -> int:
    return math.ceil(quantity(value) * 1000)


def container_limits(c: Obj) -> Limits:
    res = c.get("resources") or {}
    lim, req = res.get("limits") or {}, res.get("requests") or {}
    cpu_req = req.get("cpu", lim.get("cpu"))  # the apiserver defaults a missing request to the limit
    return Limits(
        memory=int(quantity(lim["memory"])) if "memory" in lim else None,
        cpu_limit=_milli(lim["cpu"]) if "cpu" in lim else None,
        cpu_request=_milli(cpu_req) if cpu_req is not None else None,
    )


def pod_limits(pod: Obj, pids: int | None) -> Limits:
    """Upstream's pod-level values: a limit only when every container has one, the larger of the
    app containers' sum and the largest init container (they run one at a time, before the apps)."""
    spec = pod["spec"]
    apps = [container_limits(c) for c in spec.get("containers") or []]
    inits = [container_limits(c) for c in spec.get("initContainers") or []]

    def total(attr: str, need_all: bool) -> int | None:
        vals = [getattr(x, attr) for x in apps]
        ivals = [getattr(x, attr) for x in inits]
        if need_all and None in vals + ivals:
            return None
        return max(sum(v or 0 for v in vals), max((v or 0 for v in ivals), default=0))

    return Limits(memory=total("memory", True), cpu_limit=total("cpu_limit", True),
                  cpu_request=total("cpu_request", False) or None, pids=pids)


def cpu_shares(milli: int | None) -> int:
    if milli is None:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli * 1024 // 1000))


def cpu_quota(milli: int) -> int:
    return max(MIN_QUOTA_US, milli * CPU_PERIOD_US // 1000)


def cpu_weight(shares: int) -> int:
    """runc's shares -> cpu.weight mapping ([2, 262144] onto [1, 10000])."""
    return 1 + ((shares - MIN_SHARES) * 9999) // (MAX_SHARES - MIN_SHARES)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _counter(text: str, key: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


class CgroupFs:
    """One host's cgroup trees: v2 (mounts {"": path}) or v1 (mounts {controller: path})."""

    def __init__(self, version: int, mounts: dict[str, Path]) -> None:
        self.version = version
        self.mounts = mounts

    def __repr__(self) -> str:
        trees = ", ".join(f"{k or 'unified'}={v}" for k, v in self.mounts.items())
        return f"CgroupFs(v{self.version}, {trees})"

    # cgroupfs drops a group's control files with it; a fake on a plain filesystem overrides this.
    rmdir = staticmethod(os.rmdir)

    def roots(self) -> list[Path]:
        return list(dict.fromkeys(self.mounts.values()))

    def dirs(self, rel: str) -> list[Path]:
        return [root / rel for root in self.roots()]

    def _dir(self, rel: str, controller: str) -> Path | None:
        root = self.mounts.get("" if self.version == 2 else controller)
        return root / rel if root is not None else None

    def _enable(self, parent: Path) -> None:
        # v2: a child gets a controller only when its parent lists it in cgroup.subtree_control.
        have = set(_read(parent / "cgroup.subtree_control").split())
        offered = _read(parent / "cgroup.controllers").split()
        missing = [c for c in CONTROLLERS if c in offered and c not in have]
        if missing:
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def mkdir(self, rel: str) -> list[Path]:
        """Make rel (one level below an existing parent) in every tree; returns those newly made."""
        made = []
        for d in self.dirs(rel):
            if self.version == 2:
                self._enable(d.parent)
            try:
                d.mkdir()
            except FileExistsError:
                continue
            made.append(d)
        return made

    def apply(self, rel: str, limits: Limits) -> None:
        mem, cpu, pids = (self._dir(rel, c) for c in CONTROLLERS)
        shares = cpu_shares(limits.cpu_request)
        if self.version == 2:
            assert mem is not None and cpu is not None
            if limits.memory is not None:
                _write(mem / "memory.max", str(limits.memory))
                if (mem / "memory.swap.max").exists():
                    _write(mem / "memory.swap.max", "0")  # the limit is RAM: no swapping past it
            quota = str(cpu_quota(limits.cpu_limit)) if limits.cpu_limit is not None else "max"
            _write(cpu / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            _write(cpu / "cpu.weight", str(cpu_weight(shares)))
        else:
            if mem is not None and limits.memory is not None:
                _write(mem / "memory.limit_in_bytes", str(limits.memory))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory))
            if cpu is not None:
                _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                quota = cpu_quota(limits.cpu_limit) if limits.cpu_limit is not None else -1
                _write(cpu / "cpu.cfs_quota_us", str(quota))
                _write(cpu / "cpu.shares", str(shares))
        if pids is not None and limits.pids is not None:
            _write(pids / "pids.max", str(limits.pids))

    def procs_files(self, rel: str) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs(rel)]

    def oom_kills(self, rel: str) -> int:
        mem = self._dir(rel, "memory")
        if mem is None:
            return 0
        if self.version == 2:
            return _counter(_read(mem / "memory.events"), "oom_kill")
        return _counter(_read(mem / "memory.oom_control"), "oom_kill")


def remove_cgroup(path: str | Path, wait: float = 2.0, rmdir: Any = None) -> bool:
    """rmdir one cgroup we made; a process still in it (a container's leftover child) is ours and
    is killed first, as runc kills a container's whole cgroup. True once it is gone."""
    d = Path(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            (rmdir or os.rmdir)(d)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                log.warning("could not remove cgroup %s: %s", d, e)
                return False
        pids = [int(p) for p in _read(d / "cgroup.procs").split() if p.isdigit()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not pids and any(c.is_dir() for c in d.iterdir()):
            # e.g. the shared netkube/ while another cluster still has groups in it: not ours to empty
            log.debug("cgroup %s still has sub-groups; leaving it", d)
            return False
        time.sleep(0.02)


def _mounts(text: str) -> list[tuple[str, str, set[str]]]:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("cgroup", "cgroup2"):
            out.append((f[2], f[1].replace("\\040", " "), set(f[3].split(","))))
    return out


def _writable(root: Path) -> bool:
    return root.is_dir() and os.access(root, os.W_OK)


def detect(mounts_text: str | None = None) -> tuple[CgroupFs | None, str]:
    """The usable cgroup trees, or None with the reason (for the log and the node's event)."""
    if mounts_text is None:
        mounts_text = _read(Path("/proc/self/mounts"))
    found = _mounts(mounts_text)
    for kind, mnt, _opts in found:
        if kind != "cgroup2":
            continue
        root = Path(mnt)
        offered = set(_read(root / "cgroup.controllers").split())
        if {"memory", "cpu"} <= offered and _writable(root):
            fs = CgroupFs(2, {"": root})
            try:  # fails where the root holds processes (a cgroup namespace's root): find out now
                fs._enable(root)
            except OSError as e:
                return None, f"cannot enable cgroup v2 controllers for sub-groups of {root}: {e.strerror}"
            return fs, ""
    v1: dict[str, Path] = {}
    for kind, mnt, opts in found:
        if kind == "cgroup":
            for c in CONTROLLERS:
                if c in opts and c not in v1:
                    v1[c] = Path(mnt)
    if "memory" in v1 and "cpu" in v1 and all(_writable(p) for p in v1.values()):
        return CgroupFs(1, v1), ""
    if not found:
        return None, "no cgroup filesystem is mounted"
    if not v1 and all(k == "cgroup2" for k, _, _ in found):
        return None, "cgroup v2 is mounted without the memory and cpu controllers, or read-only"
    return None, (f"no writable cgroup v1 memory and cpu hierarchies (found: "
                  f"{', '.join(sorted(v1)) or 'none'}) and no usable cgroup v2 tree")


class PodCgroups:
    """The cgroups of one node's pods. Records each directory (kind "cgroup", with the pod's uid)
    before putting anything in it; forgets it once removed."""

    def __init__(self, fs: CgroupFs, records: Records, base: str, pod_pids: int | None = DEFAULT_POD_PIDS) -> None:
        self.fs = fs
        self.records = records
        self.base = base.strip("/")  # e.g. netkube/<cluster>/<node>
        self.pod_pids = pod_pids
        self._oom_base: dict[tuple[str, str], int] = {}
        self._made: dict[str, set[str]] = {}  # pod uid -> the directories recorded for it (this run)

    def _ensure(self, rel: str, pod_uid: str = "") -> bool:
        """Make rel and its missing ancestors below the mounts; True if rel was newly made."""
        parts = rel.split("/")
        new = False
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if all(d.is_dir() for d in self.fs.dirs(sub)):
                continue
            for d in self.fs.dirs(sub):  # recorded first: a crash in between leaves it findable
                if not d.is_dir():
                    owner = pod_uid if f"pod{pod_uid}" in parts[:i] else ""
                    self.records.add("cgroup", path=str(d), pod=owner)
                    if owner:
                        self._made.setdefault(owner, set()).add(str(d))
            made = self.fs.mkdir(sub)
            new = new or (i == len(parts) and bool(made))
            if sub.endswith("/kubepods/besteffort") and made:
                self.fs.apply(sub, Limits())  # BestEffort pods share the minimum weight, as upstream
        return new

    def pod_rel(self, pod: Obj) -> str:
        qos = qos_class(pod)
        tier = "" if qos == "Guaranteed" else f"/{qos.lower()}"
        return f"{self.base}/kubepods{tier}/pod{pod['metadata']['uid']}"

    def setup_container(self, pod: Obj, container: Obj) -> list[str]:
        """Make (or reuse) the pod's and the container's cgroups with their limits; returns the
        cgroup.procs files the container process writes itself into before it execs."""
        uid = pod["metadata"]["uid"]
        pod_rel = self.pod_rel(pod)
        if self._ensure(pod_rel, uid):
            self.fs.apply(pod_rel, pod_limits(pod, self.pod_pids))
        rel = f"{pod_rel}/{container['name']}"
        self._ensure(rel, uid)
        self.fs.apply(rel, container_limits(container))
        self._oom_base[(uid, container["name"])] = self.fs.oom_kills(rel)
        return self.fs.procs_files(rel)

    def oom_killed(self, pod: Obj, name: str) -> bool:
        """Whether the kernel's OOM killer struck in the container's cgroup since it started."""
        base = self._oom_base.get((pod["metadata"]["uid"], name), 0)
        return self.fs.oom_kills(f"{self.pod_rel(pod)}/{name}") > base

    def release_container(self, pod: Obj, name: str) -> None:
        uid = pod["metadata"]["uid"]
        self._oom_base.pop((uid, name), None)
        for d in self.fs.dirs(f"{self.pod_rel(pod)}/{name}"):
            if remove_cgroup(d, rmdir=self.fs.rmdir):
                self.records.forget("cgroup", path=str(d))
                self._made.get(uid, set()).discard(str(d))

    def release_pod(self, uid: str) -> None:
        """Remove every cgroup recorded for the pod, deepest first (the records file is read only
        for a pod a previous kubelet started)."""
        mine = self._made.pop(uid, None)
        if mine is None:
            mine = {r.data["path"] for r in self.records.live() if r.kind == "cgroup" and r.data.get("pod") == uid}
        for path in sorted(mine, key=lambda p: p.count("/"), reverse=True):
            if remove_cgroup(path, rmdir=self.fs.rmdir):
                self.records.forget("cgroup", path=path)
        for key in [k for k in self._oom_base if k[0] == uid]:
            del self._oom_base[key]
