"""One pod's life on this node: sandbox, containers with restart back-off, status, graceful delete."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from netkube.client import PODS, ApiError
from netkube.kubelet import envfrom, podstate, sandbox
from netkube.kubelet.envvars import container_env
from netkube.kubelet.interfaces import CniFailure, ImageMissing, Proc
from netkube.kubelet.lifecycle import ContainerOps, PodEvents
from netkube.kubelet.podfiles import pod_hostname
from netkube.kubelet.probes import ContainerProber, ProbeHooks, ProbeSpec
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
        inits = pod["spec"].get("initContainers") or []
        self.view.init_containers = [ContainerView(c["name"], c["image"], init=True) for c in inits]
        self.view.initialized = not inits or self.state.initialized
        for cv in self.view.init_containers + (self.view.containers if not self.view.initialized else []):
            cv.state = {"waiting": {"reason": "PodInitializing"}}
        if inits and self.state.initialized:
            for cv in self.view.init_containers:  # adopted: they completed under the previous kubelet
                cv.state = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        self.events = PodEvents(ctx.client, ctx.node_name, pod)
        self.ops = ContainerOps(ctx.runtime, self.events, lambda: self.state.pod_ip)
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
            if not await self._run_inits():
                return
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
    def _restarts(self, code: int | None, init: bool = False) -> bool:
        policy = self.pod["spec"].get("restartPolicy") or "Always"
        if init:  # init containers restart on failure unless the pod's policy is Never
            return policy != "Never" and code != 0
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def _run_inits(self) -> bool:
        """Init containers one after another, each to success, before any app container starts."""
        if self.view.initialized:
            return True
        for spec, cv in zip(self.pod["spec"].get("initContainers") or [], self.view.init_containers, strict=True):
            if not await self._container_loop(spec, cv, init=True):
                return False  # failed under restartPolicy Never: the pod is Failed
        self.state.initialized = True
        self._save()
        self.view.initialized = True
        for cv in self.view.containers:
            cv.state = {"waiting": {"reason": "ContainerCreating"}}
        self._dirty.set()
        return True

    async def _wait_retry(self, cv: ContainerView, reason: str, message: str, tries: int) -> None:
        t = self.ctx.timings
        cv.state = {"waiting": {"reason": reason, "message": message}}
        self.events.warning("Failed", f"Error: {reason}")
        await self._publish()
        await asyncio.sleep(min(t.image_base * 2 ** (tries - 1), t.image_max))

    async def _container_loop(self, spec: Obj, cv: ContainerView, init: bool = False) -> bool:
        """Run one container for the pod's life; for an init container, until it succeeds (True)."""
        t = self.ctx.timings
        rec = self.state.containers.setdefault(cv.name, podstate.ContainerRecord(log_path=str(self.dir / f"{cv.name}.log")))
        proc = Proc(rec.pid, rec.start) if rec.pid else None  # adopted: alive or not, wait() tells
        if proc is not None:
            cv.state = {"running": {"startedAt": rec.started_at}}
            cv.container_id, cv.restart_count, cv.last_state = f"netkube://{rec.container_id}", rec.restart_count, rec.last_state
            self.procs[cv.name] = proc
        restarts, crashes, pulls, config_errors = rec.restart_count, 0, 0, 0
        started = time.monotonic()
        prober: asyncio.Task[None] | None = None
        if proc is not None and not init:
            prober = self._probe(spec, cv, proc, adopted=True)
        while True:
            if proc is None:
                try:
                    image = self.ctx.images.resolve(spec["image"])
                except ImageMissing as e:
                    pulls += 1
                    cv.state = {"waiting": {"reason": "ErrImagePull", "message": f'Failed to pull image "{spec["image"]}": {e}'}}
                    self.events.normal("Pulling", f'Pulling image "{spec["image"]}"')
                    self.events.warning("Failed", f'Failed to pull image "{spec["image"]}": {e}')
                    self.events.warning("Failed", "Error: ErrImagePull")
                    await self._publish()
                    cv.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{spec["image"]}": ErrImagePull: {e}'}}
                    self.events.normal("BackOff", f'Back-off pulling image "{spec["image"]}"')
                    self.events.warning("Failed", "Error: ImagePullBackOff")
                    await self._publish()
                    await asyncio.sleep(min(t.image_base * 2 ** (pulls - 1), t.image_max))
                    continue
                self.events.pulled(spec)
                try:
                    proc = await self._start(spec, cv, rec, image, restarts)
                except envfrom.EnvError as e:
                    config_errors += 1
                    await self._wait_retry(cv, "CreateContainerConfigError", str(e), config_errors)
                    continue
                except Exception as e:  # noqa: BLE001 - the image/command cannot start: runc's StartError
                    log.warning("pod %s/%s container %s failed to start: %s", self.state.namespace, self.state.name, cv.name, e)
                    self.events.warning("Failed", f"Error: failed to create containerd task: failed to create shim task: {e}")
                    proc = None
                    code: int | None = 128
                    cv.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": str(e),
                                               "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now_rfc3339()}}
                else:
                    started = time.monotonic()
                    if not await self.ops.post_start(spec, proc):
                        await self.ops.stop(spec, proc, self.grace_seconds(), f"FailedPostStartHook: Container {cv.name} failed post start hook")
                    elif not init:
                        prober = self._probe(spec, cv, proc)
            if proc is not None:
                code = await self.ctx.runtime.wait(proc)
                if prober is not None:
                    prober.cancel()
                    await asyncio.gather(prober, return_exceptions=True)
                    prober = None
                self.ctx.runtime.forget(proc)
                self.procs.pop(cv.name, None)
                oom = self._release_cgroup(cv.name)
                # containerd reports OOMKilled whenever the OOM killer struck in the container's cgroup
                cv.state = terminated_state(code, rec.started_at, now_rfc3339(), cv.container_id, oom)
            rec.pid = rec.start = 0
            proc = None
            self._save()
            self._dirty.set()
            if self.terminating.is_set():
                return False
            if init and code == 0:
                return True
            if not self._restarts(code, init):
                return False
            if time.monotonic() - started >= t.restart_reset:
                crashes = 0
            delay = restart_delay(crashes, t.restart_base, t.restart_max)
            crashes += 1
            cv.last_state = rec.last_state = cv.state
            if delay > 0:
                msg = f"back-off {format_duration(delay)} restarting failed container={cv.name} pod={format_pod(self.pod)}"
                cv.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
                self.events.warning("BackOff", f"Back-off restarting failed container {cv.name} in pod {format_pod(self.pod)}")
                self._dirty.set()
                await asyncio.sleep(delay)
            restarts += 1

    def _release_cgroup(self, name: str) -> bool:
        """Remove an exited container's cgroup; whether the OOM killer struck in it."""
        cg = self.ctx.cgroups
        if cg is None:
            return False
        try:
            oom: bool = cg.oom_killed(self.pod, name)
            cg.release_container(self.pod, name)
        except OSError as e:
            log.warning("pod %s/%s: cgroup of container %s: %s", self.state.namespace, self.state.name, name, e)
            return False
        return oom

    def _probe(self, spec: Obj, cv: ContainerView, proc: Proc, adopted: bool = False) -> asyncio.Task[None]:
        """Start the container's probes; without probes it is started and ready at once."""
        cv.started = cv.probe_ready = False

        def set_started() -> None:
            cv.started = True
            self._dirty.set()

        def set_ready(ok: bool) -> None:
            if cv.probe_ready != ok:
                cv.probe_ready = ok
                self._dirty.set()

        async def probe(ps: ProbeSpec) -> Any:
            return await self.ops.action(cv.name, spec, proc, ps.action, ps.timeout)

        async def unhealthy(ps: ProbeSpec, output: str) -> None:
            self.events.warning("Unhealthy", f"{ps.kind} probe failed: {output}")

        async def restart(ps: ProbeSpec) -> None:
            grace = ps.grace if ps.grace is not None else self.grace_seconds(deleting=False)
            await self.ops.stop(spec, proc, min(grace, self.ctx.timings.max_grace),
                                f"Container {cv.name} failed {ps.kind.lower()} probe, will be restarted")

        hooks = ProbeHooks(probe, unhealthy, set_started, set_ready, restart, self.ctx.timings.probe_scale)
        # An adopted container has been up for a while: its initial delays are long over.
        prober = ContainerProber(spec, hooks, started_at=0.0 if adopted else None)
        return asyncio.create_task(prober.run())

    async def _start(self, spec: Obj, cv: ContainerView, rec: podstate.ContainerRecord, image: Any, restarts: int) -> Proc:
        assert self.pause is not None
        hostname = pod_hostname(self.pod) if not self.pod["spec"].get("hostNetwork") else self.ctx.node_name
        md = self.pod["metadata"]
        sources = await envfrom.fetch(self.ctx.client, md["namespace"], spec)
        svc_env = container_env(self.pod, {**spec, "env": []}, self.ctx.services(), self.ctx.cluster, hostname, {})
        env_vars = envfrom.resolve(self.pod, spec, svc_env, sources, self.ctx.node_ip, self.state.pod_ip)
        argv, image_env = image.command(envfrom.expanded_container(spec, env_vars), self.pod)
        env = {**image_env, **env_vars}
        self.ops.envs[cv.name] = env
        if getattr(image, "init_ignores_sigterm", False):
            self.ops.pid1_default.add(cv.name)
        log_path = Path(rec.log_path)
        if log_path.exists():
            # Keep the last instance's output for `kubectl logs --previous`, as the kubelet does.
            os.replace(log_path, previous_log(log_path))
        # Only a runtime that takes cgroups gets them (ctx.cgroups is set for the process runtime).
        limits = {"cgroup": self.ctx.cgroups.setup_container(self.pod, spec)} if self.ctx.cgroups else {}
        if getattr(self.ctx.runtime, "runs_images", False):
            limits["image"] = image  # a runtime that runs images (docker) is told which one
        proc = await self.ctx.runtime.start_container(
            self.pause, argv, env, spec.get("workingDir"), log_path, f"container {md['namespace']}/{md['name']}/{cv.name}",
            stdin=bool(spec.get("stdin")), tty=bool(spec.get("tty")), **limits,
        )
        self.procs[cv.name] = proc
        rec.pid, rec.start, rec.container_id = proc.pid, proc.start, secrets.token_hex(32)
        rec.started_at, rec.restart_count = now_rfc3339(), restarts
        cv.container_id, cv.image_id, cv.restart_count = f"netkube://{rec.container_id}", image.image_id, restarts
        cv.state = {"running": {"startedAt": rec.started_at}}
        self.events.normal("Created", f"Created container: {cv.name}")
        self.events.normal("Started", f"Started container {cv.name}")
        self._save()
        self._dirty.set()
        return proc

    def _save(self) -> None:
        if self.dir.is_dir():
            podstate.save(self.dir / "state.json", self.state)

    # --- graceful termination -------------------------------------------------------------
    def grace_seconds(self, deleting: bool = True) -> float:
        md, spec = self.pod["metadata"], self.pod["spec"]
        grace = md.get("deletionGracePeriodSeconds") if deleting else None
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(max(0, min(grace, self.ctx.timings.max_grace)))

    async def _shutdown(self) -> None:
        # Upstream killContainersWithSyncResult: every container in parallel, each with preStop,
        # SIGTERM and SIGKILL after the pod's grace period.
        grace = self.grace_seconds()
        spec = self.pod["spec"]
        specs = {c["name"]: c for c in spec["containers"] + (spec.get("initContainers") or [])}
        procs = list(self.procs.items())
        if procs:
            await asyncio.gather(*(self.ops.stop(specs.get(n, {"name": n}), p, grace) for n, p in procs))
            for _, p in procs:
                self.ctx.runtime.forget(p)
        self.procs.clear()
        await self.events.flush()
        await sandbox.teardown(self.ctx, self.state, self.dir)
        if self.ctx.cgroups is not None:
            self.ctx.cgroups.release_pod(self.uid)

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
