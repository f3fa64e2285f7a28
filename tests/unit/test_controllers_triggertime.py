"""Trigger times stamped on Endpoints/EndpointSlices, as upstream's endpoints controllers do."""

from __future__ import annotations

from datetime import UTC, datetime

from netkube.controllers.triggertime import TRIGGER_TIME, TriggerTimeTracker, rfc3339nano, stamp


def svc(created: str = "2026-01-01T00:00:00Z") -> dict:
    return {"metadata": {"namespace": "default", "name": "web", "creationTimestamp": created}}


def pod(name: str, ready_since: str | None) -> dict:
    conds = [] if ready_since is None else [{"type": "Ready", "status": "True", "lastTransitionTime": ready_since}]
    return {"metadata": {"name": name}, "status": {"conditions": conds}}


def ts(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def test_first_sync_is_the_service_creation_then_the_earliest_new_pod_change() -> None:
    t = TriggerTimeTracker()
    pods = [pod("a", "2026-01-01T00:00:05Z"), pod("b", "2026-01-01T00:00:07Z")]
    assert t.compute(svc(), pods) == ts("2026-01-01T00:00:00Z")
    # Nothing changed since: a resync carries no trigger.
    assert t.compute(svc(), pods) is None
    # Two pods changed; the earlier change is the one the write answers to.
    pods = [pod("a", "2026-01-01T00:01:09Z"), pod("b", "2026-01-01T00:01:03Z"), pod("c", None)]
    assert t.compute(svc(), pods) == ts("2026-01-01T00:01:03Z")
    # A pod deleted is no trigger (upstream does not know when it went away).
    assert t.compute(svc(), pods[:1]) is None
    # A pod coming back with its old time counts as new: it was forgotten with the deletion.
    assert t.compute(svc(), pods) == ts("2026-01-01T00:01:03Z")


def test_service_recreated_counts_again() -> None:
    t = TriggerTimeTracker()
    t.compute(svc(), [])
    t.forget("default", "web")
    assert t.compute(svc("2026-01-02T00:00:00Z"), []) == ts("2026-01-02T00:00:00Z")


def test_stamp_writes_go_rfc3339nano_and_drops_when_none() -> None:
    meta: dict = {"annotations": {"keep": "1"}}
    stamp(meta, datetime(2026, 1, 1, 0, 0, 3, 250000, tzinfo=UTC))
    assert meta["annotations"] == {"keep": "1", TRIGGER_TIME: "2026-01-01T00:00:03.25Z"}
    stamp(meta, None)
    assert meta["annotations"] == {"keep": "1"}
    assert rfc3339nano(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"
