"""What the streaming server needs to know about a pod's containers, and the kubelet's log rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from netkube.kubelet.streaming.logs import previous_log

Obj = dict[str, Any]


class StreamError(Exception):
    """A request the kubelet refuses before streaming; code and text go back to the apiserver."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ContainerRef:
    name: str
    log_path: Path
    state: Obj = field(default_factory=dict)  # the containerStatus state, e.g. {"running": {...}}
    last_state: Obj = field(default_factory=dict)
    pid: int = 0  # the main process (0 when not running); exec joins its namespaces
    alive: Callable[[], bool] = lambda: False
    console: Any = None  # console.Console when the spec has stdin: true


@dataclass
class PodRef:
    namespace: str
    name: str
    uid: str
    netns_path: str = ""  # for port-forward: where connections to localhost:<port> go
    containers: dict[str, ContainerRef] = field(default_factory=dict)


class PodLookup(Protocol):
    def find(self, namespace: str, name: str) -> PodRef | None: ...


def container(lookup: PodLookup, namespace: str, pod: str, name: str) -> tuple[PodRef, ContainerRef]:
    ref = lookup.find(namespace, pod)
    if ref is None:
        raise StreamError(404, f'pod "{pod}" not found')  # no such pod on this node
    c = ref.containers.get(name)
    if c is None:
        raise StreamError(404, f'container "{name}" not found in pod "{pod}"')
    return ref, c


def running(lookup: PodLookup, namespace: str, pod: str, name: str) -> tuple[PodRef, ContainerRef]:
    """exec and attach need a running instance; the kubelet answers `container not found` otherwise."""
    ref, c = container(lookup, namespace, pod, name)
    if not c.alive():
        raise StreamError(400, f'container not found ("{name}")')
    return ref, c


def log_file(pod: str, c: ContainerRef, previous: bool) -> Path:
    """Which instance's log to read, following upstream's validateContainerLogStatus."""
    state, last = c.state, c.last_state
    if previous:
        if "terminated" not in last:
            raise StreamError(400, f'previous terminated container "{c.name}" in pod "{pod}" not found')
        # Crash-looping, the newest dead instance still owns the main file until the next start.
        return c.log_path if "waiting" in state else previous_log(c.log_path)
    if "running" in state or "terminated" in state or "terminated" in last:
        return c.log_path
    if "waiting" in state:
        reason = state["waiting"].get("reason", "")
        text = {"ErrImagePull": "image can't be pulled",
                "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise StreamError(400, f'container "{c.name}" in pod "{pod}" is waiting to start: {text}')
    raise StreamError(400, f'container "{c.name}" in pod "{pod}" is waiting to start - no logs yet')
