"""Per-container kubelet actions: Events as upstream words them, hooks, graceful stop with PID-1 rules."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from netkube.controllers.events import EventRecorder
from netkube.images.reference import parse_reference
from netkube.kubelet.actions import Result, run_action
from netkube.kubelet.interfaces import Proc, Runtime

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def pull_policy(container: Obj) -> str:
    """The apiserver default: Always for :latest or no tag, else IfNotPresent."""
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    try:
        tag = parse_reference(container["image"]).tag
    except Exception:  # noqa: BLE001 - an invalid name fails later with its own message
        return "IfNotPresent"
    return "Always" if not tag or tag == "latest" else "IfNotPresent"


class PodEvents:
    """The kubelet's Events for one pod (source component "kubelet", host = node), sent in the
    background so a slow apiserver never delays a container."""

    def __init__(self, client: Any, node: str, pod: Obj) -> None:
        self.recorder = EventRecorder(client, "kubelet", node)
        self.pod = pod
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, type_: str, reason: str, message: str) -> None:
        task = asyncio.get_running_loop().create_task(self.recorder.event(self.pod, type_, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def normal(self, reason: str, message: str) -> None:
        self.emit("Normal", reason, message)

    def warning(self, reason: str, message: str) -> None:
        self.emit("Warning", reason, message)

    def pulled(self, container: Obj) -> None:
        image = container["image"]
        if pull_policy(container) == "Always":
            self.normal("Pulling", f'Pulling image "{image}"')
            self.normal("Pulled", f'Successfully pulled image "{image}" in 0s (0s including waiting)')
        else:
            self.normal("Pulled", f'Container image "{image}" already present on machine')

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class ContainerOps:
    """Hooks and stopping for one pod's containers; the pod worker owns the processes."""

    def __init__(self, runtime: Runtime, events: PodEvents, pod_ip: Any) -> None:
        self.rt = runtime
        self.events = events
        self.pod_ip = pod_ip  # callable: the pod IP once the sandbox exists
        self.envs: dict[str, dict[str, str]] = {}
        self.pid1_default: set[str] = set()  # containers whose image's PID 1 ignores SIGTERM

    async def action(self, name: str, container: Obj, proc: Proc, action: Obj, timeout: float) -> Result:
        async def exec_fn(argv: list[str], t: float) -> tuple[int | None, str]:
            return await self.rt.exec_in(proc, argv, self.envs.get(name, {}), t)

        return await run_action(action, container, self.pod_ip(), timeout, exec_fn)

    async def post_start(self, container: Obj, proc: Proc) -> bool:
        """Upstream runs postStart right after start; a failure kills the container."""
        hook = (container.get("lifecycle") or {}).get("postStart")
        if not hook:
            return True
        res = await self.action(container["name"], container, proc, hook, 30.0)
        if res.ok:
            return True
        self.events.warning("FailedPostStartHook", _hook_failed(hook, container["name"], res))
        return False

    async def stop(self, container: Obj, proc: Proc, grace: float, message: str | None = None) -> int | None:
        """Killing event, preStop hook, SIGTERM, then SIGKILL when the grace period runs out."""
        name = container["name"]
        self.events.normal("Killing", message or f"Stopping container {name}")
        deadline = time.monotonic() + grace
        hook = (container.get("lifecycle") or {}).get("preStop")
        if hook and self.rt.alive(proc):
            try:
                res = await asyncio.wait_for(self.action(name, container, proc, hook, max(grace, 0.1)), max(grace, 0.1))
            except TimeoutError:
                res = Result(False, "context deadline exceeded")
            if not res.ok:
                self.events.warning("FailedPreStopHook", _hook_failed(hook, name, res))
        if name not in self.pid1_default or self.rt.handles(proc, signal.SIGTERM):
            self.rt.signal(proc, signal.SIGTERM)
        waiter = asyncio.ensure_future(self.rt.wait(proc))
        done, _ = await asyncio.wait([waiter], timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            self.rt.signal(proc, signal.SIGKILL)  # grace period over, as the kubelet does
        return await waiter


def _hook_failed(hook: Obj, name: str, res: Result) -> str:
    if "exec" in hook:
        return f"Exec lifecycle hook ({hook['exec'].get('command')}) for Container \"{name}\" failed - error: {res.output}"
    if "httpGet" in hook:
        return f"HTTP lifecycle hook ({hook['httpGet'].get('path', '/')}) for Container \"{name}\" failed - error: {res.output}"
    return f"lifecycle hook for Container \"{name}\" failed - error: {res.output}"
