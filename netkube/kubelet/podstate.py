"""The per-pod state file (pods/<uid>/state.json) that lets a restarted kubelet and the CLI find pods."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netkube.config import ClusterConfig
from netkube.lab.records import process_start_time


@dataclass
class ContainerRecord:
    pid: int = 0
    start: int = 0  # /proc start time, so a recycled pid is never mistaken for ours
    container_id: str = ""
    started_at: str = ""
    restart_count: int = 0
    log_path: str = ""
    last_state: dict[str, Any] = field(default_factory=dict)


@dataclass
class PodState:
    uid: str
    namespace: str
    name: str
    netns: str = ""
    pod_ip: str = ""
    pause_pid: int = 0
    pause_start: int = 0
    start_time: str = ""
    initialized: bool = False  # every init container completed: a restarted kubelet does not rerun them
    containers: dict[str, ContainerRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PodState:
        data = json.loads(text)
        containers = {k: ContainerRecord(**v) for k, v in data.pop("containers", {}).items()}
        return cls(containers=containers, **data)


def pods_dir(cluster: ClusterConfig, node: str) -> Path:
    return cluster.node_dir(node) / "pods"


def save(path: Path, state: PodState) -> None:
    # Write-then-rename so a reader (CLI, restarted kubelet) never sees a torn file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)


def load(path: Path) -> PodState | None:
    try:
        return PodState.from_json(path.read_text())
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


def load_all(cluster: ClusterConfig, node: str) -> dict[str, PodState]:
    out: dict[str, PodState] = {}
    base = pods_dir(cluster, node)
    if not base.is_dir():
        return out
    for entry in sorted(base.iterdir()):
        st = load(entry / "state.json")
        if st is not None:
            out[st.uid] = st
    return out


def alive(pid: int, start: int) -> bool:
    return pid > 0 and process_start_time(pid) == start


class ExecTargetError(LookupError):
    """The pod or container to enter cannot be found; the message says why."""


def find_exec_target(cluster: ClusterConfig, node: str, pod_uid: str, container: str | None) -> int:
    """The pid whose namespaces `netkube exec` should join (a running container, else the pause)."""
    st = load(pods_dir(cluster, node) / pod_uid / "state.json")
    if st is None:
        raise ExecTargetError(f"pod {pod_uid} has no state on {node}; is it scheduled and started there?")
    if container is None:
        for rec in st.containers.values():
            if alive(rec.pid, rec.start):
                return rec.pid
        if alive(st.pause_pid, st.pause_start):
            return st.pause_pid
        raise ExecTargetError(f"pod {st.namespace}/{st.name} has no running process on {node}")
    rec = st.containers.get(container)
    if rec is None:
        names = ", ".join(sorted(st.containers)) or "none"
        raise ExecTargetError(f"container {container!r} is not in pod {st.namespace}/{st.name} (containers: {names})")
    if not alive(rec.pid, rec.start):
        raise ExecTargetError(f"container {container!r} of pod {st.namespace}/{st.name} is not running")
    return rec.pid
