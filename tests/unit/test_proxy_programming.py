"""Network programming latency (last-change-trigger-time -> end of the sync that programmed it) and
the sync runner around it: failed syncs keep their triggers, the canary never holds up a change."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from proxy_modes.model import ProxyState
from proxy_modes.programming import TRIGGER_TIME, ProgrammingLatency, format_trigger_time, trigger_time
from proxy_modes.syncrunner import SyncRunner
from proxy_modes.tracker import ChangeTracker


def slice_obj(svc: str, ip: str, trigger: float | None) -> dict:
    md: dict = {"name": f"{svc}-abc", "namespace": "ns1", "labels": {"kubernetes.io/service-name": svc}}
    if trigger is not None:
        md["annotations"] = {TRIGGER_TIME: format_trigger_time(trigger)}
    return {"metadata": md, "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]}


def service_obj(svc: str) -> dict:
    return {"metadata": {"name": svc, "namespace": "ns1"},
            "spec": {"clusterIP": "172.30.0.9", "type": "ClusterIP", "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}}


def test_trigger_time_round_trip_and_upstream_forms() -> None:
    t = 1_790_000_000.123456
    assert trigger_time({"metadata": {"annotations": {TRIGGER_TIME: format_trigger_time(t)}}}) == pytest.approx(t, abs=1e-6)
    assert trigger_time({"metadata": {"annotations": {TRIGGER_TIME: "2026-11-22T03:00:00.5Z"}}}) == pytest.approx(1795316400.5)
    assert trigger_time({"metadata": {"annotations": {TRIGGER_TIME: "yesterday"}}}) is None
    assert trigger_time({"metadata": {}}) is None


def test_only_new_triggers_after_start_count() -> None:
    now = [1000.0]
    lat = ProgrammingLatency(clock=lambda: now[0])
    lat.on_slice("ADDED", slice_obj("old", "10.0.0.1", 900.0))  # from before kube-proxy started
    first = slice_obj("a", "10.0.0.1", 1001.0)
    lat.on_slice("ADDED", first)
    lat.on_slice("MODIFIED", slice_obj("a", "10.0.0.2", 1001.0), first)  # same trigger: not a new change
    lat.on_slice("DELETED", slice_obj("b", "10.0.0.1", 1002.0))
    taken = lat.take()
    assert taken == {"ns1/a": [1001.0]}
    now[0] = 1001.25
    assert lat.programmed(taken) == [("ns1/a", 0.25)]
    assert lat.take() == {}


class Backend:
    """Fake backend: fails on demand; its canary check can be made slow."""

    def __init__(self) -> None:
        self.fail = False
        self.intact = True
        self.canary_gate: threading.Event | None = None
        self.syncs: list[tuple[bool, set[str]]] = []

    def sync(self, state: ProxyState, full: bool) -> None:
        if self.fail:
            raise RuntimeError("restore failed")
        self.syncs.append((full, set(state.changed)))

    def cleanup(self) -> None:
        pass

    def tables_intact(self) -> bool:
        if self.canary_gate is not None:
            self.canary_gate.wait(5)
        return self.intact


async def test_failed_sync_keeps_the_trigger_for_the_next_one() -> None:
    clock = [2000.0]
    lat = ProgrammingLatency(clock=lambda: clock[0])
    tracker, be = ChangeTracker("node1"), Backend()
    runner = SyncRunner(tracker, be, latency=lat)
    tracker.on_service("ADDED", service_obj("a"))
    obj = slice_obj("a", "10.0.0.1", 2001.0)
    tracker.on_endpoint_slice("ADDED", obj)
    lat.on_slice("ADDED", obj)
    be.fail = True
    clock[0] = 2001.5
    assert not await runner.sync_once()
    assert not lat.observed
    be.fail = False
    clock[0] = 2002.0
    assert await runner.sync_once()
    assert list(lat.observed) == [("ns1/a", 1.0)]


async def first_sync(be: Backend) -> None:
    while not be.syncs:
        await asyncio.sleep(0.01)


async def test_a_slow_canary_does_not_delay_a_change() -> None:
    tracker, be = ChangeTracker("node1"), Backend()
    runner = SyncRunner(tracker, be, min_interval=0.0, canary_interval=0.0)
    be.canary_gate = threading.Event()  # the canary check hangs until released
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(first_sync(be), 2)
        tracker.on_service("ADDED", service_obj("a"))
        runner.request()
        t = time.monotonic()
        while not any("ns1/a" in changed for _, changed in be.syncs):
            assert time.monotonic() - t < 2, "the change waited for the canary"
            await asyncio.sleep(0.01)
    finally:
        be.canary_gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_canary_gone_forces_a_full_resync() -> None:
    tracker, be = ChangeTracker("node1"), Backend()
    runner = SyncRunner(tracker, be, min_interval=0.0, canary_interval=0.05)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(first_sync(be), 2)
        be.intact = False  # someone flushed the tables
        t = time.monotonic()
        while runner.full_syncs < 2:
            assert time.monotonic() - t < 3, "no full resync after the canary vanished"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert be.syncs[0][0] and be.syncs[-1][0]
