"""Pure pod-status building: phase, conditions and containerStatuses as the kubelet reports them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerView:
    name: str
    image: str
    image_id: str = ""
    container_id: str = ""
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    started: bool = False  # the startup probe passed (or there is none) for the running instance
    probe_ready: bool = False  # the readiness probe passed (or there is none) since it started
    init: bool = False  # an init container: ready means it completed

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def completed(self) -> bool:
        return (self.state.get("terminated") or {}).get("exitCode") == 0

    @property
    def ready(self) -> bool:
        if self.init:
            return self.completed
        return self.running and self.started and self.probe_ready

    def to_status(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.running and self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


@dataclass
class PodView:
    host_ip: str
    pod_ip: str = ""
    start_time: str = ""
    sandbox_ready: bool = False
    containers: list[ContainerView] = field(default_factory=list)
    init_containers: list[ContainerView] = field(default_factory=list)
    initialized: bool = True


def terminated_state(exit_code: int | None, started_at: str, finished_at: str, container_id: str,
                     oom_killed: bool = False) -> Obj:
    """oom_killed: the OOM killer struck in the container's cgroup (containerd's TaskOOM event)."""
    if exit_code is None:  # the process was not ours to reap (kubelet restarted): upstream's wording
        return {
            "terminated": {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "startedAt": started_at,
                "finishedAt": finished_at,
                "containerID": container_id,
            }
        }
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": "OOMKilled" if oom_killed else "Completed" if exit_code == 0 else "Error",
            "startedAt": started_at,
            "finishedAt": finished_at,
            "containerID": container_id,
        }
    }


def pod_phase(restart_policy: str, containers: list[ContainerView], inits: list[ContainerView] | None = None) -> str:
    """Mirrors upstream getPhase: Pending while init containers run, Failed if one failed under Never."""
    for c in inits or []:
        if c.completed:
            continue
        if restart_policy == "Never" and ("terminated" in c.state or "terminated" in c.last_state):
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in containers:
        if "running" in c.state:
            running += 1
        elif "terminated" in c.state:
            stopped += 1
            if c.state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "terminated" in c.last_state:
            stopped += 1  # waiting to restart after having run: counts as stopped upstream
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(ctype: str, ok: bool, prev: dict[str, Obj], now: str, reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    old = prev.get(ctype)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if not ok and reason:
        cond["reason"] = reason
        cond["message"] = message
    return cond


def build_status(pod: Obj, view: PodView, now: str) -> Obj:
    prev = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    spec = pod["spec"]
    phase = pod_phase(spec.get("restartPolicy") or "Always", view.containers, view.init_containers)
    unready = [c.name for c in view.containers if not c.ready]
    pending_init = [c.name for c in view.init_containers if not c.completed]
    if phase == "Succeeded":
        reason = "PodCompleted"
    else:
        reason = "ContainersNotReady"
    msg = f"containers with unready status: [{' '.join(unready)}]"
    all_ready = not unready and phase == "Running"
    conditions = [
        _condition("PodReadyToStartContainers", view.sandbox_ready, prev, now),
        _condition("Initialized", view.initialized or not pending_init, prev, now, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(pending_init)}]"),
        _condition("Ready", all_ready, prev, now, reason, msg),
        _condition("ContainersReady", all_ready, prev, now, reason, msg),
        _condition("PodScheduled", True, prev, now),
    ]
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": view.start_time,
        "containerStatuses": [c.to_status() for c in view.containers],
        "qosClass": qos_class(pod),
    }
    if view.init_containers:
        status["initContainerStatuses"] = [c.to_status() for c in view.init_containers]
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    return status


def qos_class(pod: Obj) -> str:
    requests = limits = 0
    guaranteed = True
    for c in pod["spec"].get("containers", []):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests += len(req)
        limits += len(lim)
        for r in ("cpu", "memory"):
            if r not in lim or req.get(r, lim[r]) != lim[r]:
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def restart_delay(restarts_done: int, base: float, cap: float) -> float:
    """Delay before restart number restarts_done+1: the first restart is immediate, then
    base, 2*base, ... capped (upstream: 10 s doubling to 300 s)."""
    if restarts_done <= 0:
        return 0.0
    return float(min(base * (2 ** (restarts_done - 1)), cap))


def format_pod(pod: Obj) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md['namespace']}({md['uid']})"


def format_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds/minutes: 10s, 5m0s, 2m40s."""
    s = int(seconds)
    if s < 60:
        return f"{s}s" if s == seconds else f"{seconds:g}s"
    return f"{s // 60}m{s % 60}s"
