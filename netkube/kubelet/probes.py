"""Startup, liveness and readiness probing of one running container, with upstream's thresholds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from netkube.kubelet.actions import Result

Obj = dict[str, Any]


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # "Startup", "Liveness", "Readiness" (upstream's capitalised probe type in messages)
    action: Obj
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    grace: float | None = None  # probe-level terminationGracePeriodSeconds

    @classmethod
    def of(cls, kind: str, probe: Obj | None) -> ProbeSpec | None:
        if not probe:
            return None
        # Defaults as the apiserver fills them in (SetDefaults_Probe); liveness/startup need successThreshold 1.
        grace = probe.get("terminationGracePeriodSeconds")
        return cls(
            kind, probe,
            float(probe.get("initialDelaySeconds") or 0),
            float(probe.get("periodSeconds") or 10),
            float(probe.get("timeoutSeconds") or 1),
            1 if kind != "Readiness" else int(probe.get("successThreshold") or 1),
            int(probe.get("failureThreshold") or 3),
            float(grace) if grace is not None else None,
        )


class Threshold:
    """Upstream worker.doProbe: a result counts only after N equal results in a row."""

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        self.last: bool | None = None
        self.run = 0

    def feed(self, ok: bool) -> bool | None:
        """The new probe result once its threshold is reached, else None (state unchanged)."""
        if ok == self.last:
            self.run += 1
        else:
            self.last, self.run = ok, 1
        need = self.spec.success_threshold if ok else self.spec.failure_threshold
        return ok if self.run >= need else None


@dataclass
class ProbeHooks:
    """What the prober needs from the pod worker; all callbacks are cheap and never raise."""

    probe: Callable[[ProbeSpec], Awaitable[Result]]
    unhealthy: Callable[[ProbeSpec, str], Awaitable[None]]  # Warning Unhealthy event
    set_started: Callable[[], None]
    set_ready: Callable[[bool], None]
    restart: Callable[[ProbeSpec], Awaitable[None]]  # liveness/startup failed: kill the container
    scale: float = 1.0  # tests shrink every probe interval by this factor


class ContainerProber:
    """One running container instance. Its life ends with the container, so upstream's onHold and
    container-ID bookkeeping become the task's lifetime here."""

    def __init__(self, container: Obj, hooks: ProbeHooks, started_at: float | None = None) -> None:
        self.startup = ProbeSpec.of("Startup", container.get("startupProbe"))
        self.liveness = ProbeSpec.of("Liveness", container.get("livenessProbe"))
        self.readiness = ProbeSpec.of("Readiness", container.get("readinessProbe"))
        self.hooks = hooks
        self.started_at = time.monotonic() if started_at is None else started_at

    async def run(self) -> None:
        h = self.hooks
        if self.startup is not None:
            # Liveness and readiness wait for the startup probe (upstream: skipped while !Started).
            if not await self._loop(self.startup):
                await h.restart(self.startup)
                return
        h.set_started()
        if self.readiness is None:
            h.set_ready(True)
        loops = [self._loop(s) for s in (self.liveness, self.readiness) if s is not None]
        if not loops:
            return
        tasks = [asyncio.ensure_future(c) for c in loops]
        try:
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    tasks.remove(t)
                    if t.result() is False and self.liveness is not None:
                        await h.restart(self.liveness)
                        return
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, spec: ProbeSpec) -> bool:
        """Probe every period. Startup returns True on success; liveness/startup return False at
        the failure threshold; readiness reports every change and runs until cancelled."""
        h, th = self.hooks, Threshold(spec)
        wait = spec.initial_delay * h.scale - (time.monotonic() - self.started_at)
        if wait > 0:
            await asyncio.sleep(wait)
        while True:
            t0 = time.monotonic()
            res = await h.probe(spec)
            if not res.ok:
                await h.unhealthy(spec, res.output)
            outcome = th.feed(res.ok)
            if outcome is not None:
                if spec.kind == "Readiness":
                    h.set_ready(outcome)
                elif spec.kind == "Startup" and outcome:
                    return True
                elif not outcome:
                    return False
            await asyncio.sleep(max(0.0, spec.period * h.scale - (time.monotonic() - t0)))
