"""Network programming latency, as upstream kube-proxy's network_programming_duration_seconds.

An EndpointSlice's annotation endpoints.kubernetes.io/last-change-trigger-time says when the change
behind it happened (the endpoints controller sets it upstream; any writer may). kube-proxy takes the
time from there to the end of the sync that put the change in the kernel. As upstream, triggers older
than the tracker's start are ignored (a restart would otherwise report hours)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from proxy_modes.model import Obj

log = logging.getLogger(__name__)
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
SERVICE_NAME = "kubernetes.io/service-name"
LOGGED_SERVICES = 10  # one log line per sync names at most this many services


def trigger_time(obj: Obj | None) -> float | None:
    """The annotation as seconds since the epoch (RFC 3339, fractional seconds allowed), or None."""
    raw = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(TRIGGER_TIME)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_trigger_time(t: float) -> str:
    """RFC 3339 in UTC with a fraction, as the endpoints controller writes it (RFC3339Nano)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ProgrammingLatency:
    """Trigger times waiting for a sync, per service key ("ns/name"), and the latencies observed."""

    def __init__(self, clock: Callable[[], float] = time.time, keep: int = 10000) -> None:
        self.clock = clock
        self.started = clock()
        self._pending: dict[str, list[float]] = {}
        self._seen: dict[float, float] = {}  # trigger -> when its event reached us (for the log only)
        self.observed: deque[tuple[str, float]] = deque(maxlen=keep)

    def on_slice(self, etype: str, obj: Obj, old: Obj | None = None) -> None:
        t = trigger_time(obj)
        if etype == "DELETED" or t is None or t <= self.started or t == trigger_time(old):
            return  # no new trigger: a resync, a status-only write, or from before we started
        md = obj.get("metadata", {})
        svc = (md.get("labels") or {}).get(SERVICE_NAME)
        if svc:
            self._pending.setdefault(f"{md.get('namespace', 'default')}/{svc}", []).append(t)
            self._seen[t] = self.clock()

    def take(self) -> dict[str, list[float]]:
        """The triggers a sync starting now will program (call right before the tracker's snapshot)."""
        taken, self._pending = self._pending, {}
        return taken

    def put_back(self, taken: dict[str, list[float]]) -> None:
        """The sync failed: its triggers wait for the next one."""
        for key, times in taken.items():
            self._pending.setdefault(key, [])[:0] = times

    def programmed(self, taken: dict[str, list[float]], how: str = "", started: float | None = None
                   ) -> list[tuple[str, float]]:
        """The sync that took `taken` (begun at `started`, this clock) is in the kernel: record and log
        each latency (`how`: that sync)."""
        now = self.clock()
        done = [(key, now - t) for key, times in sorted(taken.items()) for t in times]
        # How long the first change took to reach us (apiserver + watch), to tell the parts apart.
        first = min((t for times in taken.values() for t in times), default=None)
        seen_at = self._seen.pop(first, first) if first is not None else now
        seen = seen_at - first if first is not None else 0.0
        queued = (started if started is not None else seen_at) - seen_at
        for times in taken.values():
            for t in times:
                self._seen.pop(t, None)
        self.observed.extend(done)
        if done:
            shown = " ".join(f"{key}={lat:.4f}" for key, lat in done[:LOGGED_SERVICES])
            more = f" (+{len(done) - LOGGED_SERVICES} more)" if len(done) > LOGGED_SERVICES else ""
            log.info("network programming latency (s): %s%s [%s, event after %.3f s, sync began %.3f s after it]",
                     shown, more, how, seen, queued)
        return done
