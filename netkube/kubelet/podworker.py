"""One pod's life on this node: sandbox, containers with restart back-off, status, graceful delete."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from netkube.client import PODS, ApiError
from netkube.kubelet import podstate, sandbox
from netkube.kubelet.envvars import container_env
from netkube.kubelet.interfaces import CniFailure, ImageMissing, Proc
from netkube.kubelet.podfiles import pod_hostname
from netkube.kubelet.runtime import RuntimeFailure
from netkube.kubelet.sandbox import NodeContext, SandboxError
from netkube.kubelet.status import (
    ContainerView,
    PodView,
    build_status,
    format_duration,
    format_pod,
    now_rfc3339,
    restart_delay,
    terminated_state,
)
from netkube.kubelet.streaming.logs import previous_log

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: Obj, adopted: podstate.PodState | None = None) -> None:
        self.ctx = ctx
        self.pod = pod
        md = pod["metadata"]
        self.uid: str = md["uid"]
        self.dir: Path = ctx.pods_dir / self.uid
        self.state = adopted or podstate.PodState(self.uid, md["namespace"], md["name"], start_time=now_rfc3339())
        self.view = PodView(host_ip=ctx.node_ip, start_time=self.state.start_time)
        self.view.containers = [ContainerView(c["name"], c["image"]) for c in pod["spec"]["containers"]]
        self.pause: Proc | None = None
        self.procs: dict[str, Proc] = {}
        self.terminating = asyncio.Event()
        self.gone = False  # the API object vanished: nothing left to DELETE
        self.done = asyncio.Event()
        self._dirty = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._last_sent: Obj | None = None

    # --- events from the informer ---------------------------------------------------------
    def update(self, pod: Obj) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.terminating.set()

    def vanish(self) -> None:
        self.gone = True
        self.terminating.set()

    # --- the whole life -------------------------------------------------------------------
    async def run(self) -> None:
        publisher = asyncio.create_task(self._publish_loop())
        life = asyncio.create_task(self._live())
        try:
            if self.pod["metadata"].get("deletionTimestamp"):
                self.terminating.set()
            await self.terminating.wait()
            life.cancel()
            await asyncio.gather(life, return_exceptions=True)
            await self._shutdown()
        finally:
            publisher.cancel()
            life.cancel()
            self.done.set()
        if not self.gone:
            md = self.pod["metadata"]
            try:
                await self.ctx.client.delete(PODS, md["name"], md["namespace"], grace_period=0)
            except ApiError as e:
                if e.code != 404:
                    log.warning("final delete of pod %s/%s failed: %s", md["namespace"], md["name"], e)

    async def _live(self) -> None:
        try:
            await self._ensure_sandbox()
            await asyncio.gather(*(self._container_loop(c, v) for c, v in zip(self.pod["spec"]["containers"], self.view.containers, strict=True)))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s worker failed", self.state.namespace, self.state.name)

    async def _ensure_sandbox(self) -> None:
        st = self.state
        if st.pause_pid and self.ctx.runtime.alive(Proc(st.pause_pid, st.pause_start)):
            self.pause = Proc(st.pause_pid, st.pause_start)  # adopted from a previous kubelet
        delay = self.ctx.timings.sandbox_retry
        while self.pause is None:
            try:
                self.pause = await sandbox.create(self.ctx, self.pod, st, self.dir)
            except (SandboxError, CniFailure, RuntimeFailure, OSError) as e:
                log.warning("pod %s/%s: failed to create sandbox, retrying in %gs: %s", st.namespace, st.name, delay, e)
                await sandbox.teardown(self.ctx, st, self.dir, remove_dir=False)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.ctx.timings.sandbox_retry_max)
        self.view.pod_ip = st.pod_ip
        self.view.sandbox_ready = True
        self._dirty.set()

    # --- containers -----------------------------------------------------------------------
    def _restarts(self, code: int | None) -> bool:
        policy = self.pod["spec"].get("restartPolicy") or "Always"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def _container_loop(self, spec: Obj, cv: ContainerView) -> None:
        t = self.ctx.timings
        rec = self.state.containers.setdefault(cv.name, podstate.ContainerRecord(log_path=str(self.dir / f"{cv.name}.log")))
        proc = Proc(rec.pid, rec.start) if rec.pid else None  # adopted: alive or not, wait() tells
        if proc is not None:
            cv.state = {"running": {"startedAt": rec.started_at}}
            cv.container_id, cv.restart_count, cv.last_state = f"netkube://{rec.container_id}", rec.restart_count, rec.last_state
        restarts, crashes, pulls = rec.restart_count, 0, 0
        started = time.monotonic()
        while True:
            if proc is None:
                try:
                    image = self.ctx.images.resolve(spec["image"])
                except ImageMissing as e:
                    pulls += 1
                    cv.state = {"waiting": {"reason": "ErrImagePull", "message": f'Failed to pull image "{spec["image"]}": {e}'}}
                    await self._publish()
                    cv.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{spec["image"]}": ErrImagePull: {e}'}}
                    await self._publish()
                    await asyncio.sleep(min(t.image_base * 2 ** (pulls - 1), t.image_max))
                    continue
                proc = await self._start(spec, cv, rec, image, restarts)
                started = time.monotonic()
            code = await self.ctx.runtime.wait(proc)
            self.ctx.runtime.forget(proc)
            self.procs.pop(cv.name, None)
            cv.state = terminated_state(code, rec.started_at, now_rfc3339(), cv.container_id)
            rec.pid = rec.start = 0
            proc = None
            self._save()
            self._dirty.set()
            if self.terminating.is_set() or not self._restarts(code):
                return
            if time.monotonic() - started >= t.restart_reset:
                crashes = 0
            delay = restart_delay(crashes, t.restart_base, t.restart_max)
            crashes += 1
            cv.last_state = rec.last_state = cv.state
            if delay > 0:
                msg = f"back-off {format_duration(delay)} restarting failed container={cv.name} pod={format_pod(self.pod)}"
                cv.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
                self._dirty.set()
                await asyncio.sleep(delay)
            restarts += 1

    async def _start(self, spec: Obj, cv: ContainerView, rec: podstate.ContainerRecord, image: Any, restarts: int) -> Proc:
        assert self.pause is not None
        argv, image_env = image.command(spec, self.pod)
        hostname = pod_hostname(self.pod) if not self.pod["spec"].get("hostNetwork") else self.ctx.node_name
        env = container_env(self.pod, spec, self.ctx.services(), self.ctx.cluster, hostname, image_env)
        md = self.pod["metadata"]
        log_path = Path(rec.log_path)
        if log_path.exists():
            # Keep the last instance's output for `kubectl logs --previous`, as the kubelet does.
            os.replace(log_path, previous_log(log_path))
        proc = await self.ctx.runtime.start_container(
            self.pause, argv, env, spec.get("workingDir"), log_path, f"container {md['namespace']}/{md['name']}/{cv.name}",
            stdin=bool(spec.get("stdin")), tty=bool(spec.get("tty")),
        )
        self.procs[cv.name] = proc
        rec.pid, rec.start, rec.container_id = proc.pid, proc.start, secrets.token_hex(32)
        rec.started_at, rec.restart_count = now_rfc3339(), restarts
        cv.container_id, cv.image_id, cv.restart_count = f"netkube://{rec.container_id}", image.image_id, restarts
        cv.state = {"running": {"startedAt": rec.started_at}}
        self._save()
        self._dirty.set()
        return proc

    def _save(self) -> None:
        if self.dir.is_dir():
            podstate.save(self.dir / "state.json", self.state)

    # --- graceful termination -------------------------------------------------------------
    def grace_seconds(self) -> float:
        md, spec = self.pod["metadata"], self.pod["spec"]
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(max(0, min(grace, self.ctx.timings.max_grace)))

    async def _shutdown(self) -> None:
        rt = self.ctx.runtime
        procs = list(self.procs.values())
        for p in procs:
            rt.signal(p, signal.SIGTERM)
        if procs:
            waits = [asyncio.ensure_future(rt.wait(p)) for p in procs]
            _, pending = await asyncio.wait(waits, timeout=self.grace_seconds())
            if pending:
                for p in procs:
                    rt.signal(p, signal.SIGKILL)  # grace period over, as the kubelet does
                await asyncio.gather(*pending)
            for p in procs:
                rt.forget(p)
        self.procs.clear()
        await sandbox.teardown(self.ctx, self.state, self.dir)

    # --- status ---------------------------------------------------------------------------
    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._publish()

    async def _publish(self) -> None:
        async with self._publish_lock:
            base = self.pod if self._last_sent is None else {**self.pod, "status": self._last_sent}
            status = build_status(base, self.view, now_rfc3339())
            if status == self._last_sent or self.terminating.is_set():
                return
            md = self.pod["metadata"]
            try:
                await self.ctx.client.patch(PODS, md["name"], {"status": status}, md["namespace"], sub="status")
                self._last_sent = status
            except ApiError as e:
                if e.code != 404:
                    log.warning("status update of pod %s/%s failed: %s", md["namespace"], md["name"], e)
                    self._dirty.set()
                    await asyncio.sleep(1)
            except Exception as e:  # apiserver unreachable (aiohttp/OS errors): retry, never die
                log.warning("status update of pod %s/%s failed: %s", md["namespace"], md["name"], e)
                self._dirty.set()
                await asyncio.sleep(1)
