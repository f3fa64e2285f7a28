"""Records: what is live, forgetting, torn lines, and pid reuse protection."""

from __future__ import annotations

import os
import subprocess

from netkube.lab.cleanup import remove_recorded
from netkube.lab.records import Records, process_start_time


def test_live_drops_forgotten_and_survives_torn_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = Records(tmp_path / "r.jsonl")
    r.add_netns("a")
    r.add_netns("b")
    r.add("path", path="/x")
    r.forget("netns", name="a")
    with open(r.path, "a") as f:
        f.write('{"kind": "netns", "na')  # SIGKILL mid-write
    live = r.live()
    assert [(x.kind, x.data.get("name") or x.data.get("path")) for x in live] == [("netns", "b"), ("path", "/x")]


def test_start_time_distinguishes_processes() -> None:
    assert process_start_time(os.getpid()) is not None
    assert process_start_time(2**22 + 12345) is None


def test_remove_recorded_stops_exactly_the_recorded_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = Records(tmp_path / "r.jsonl")
    mine = subprocess.Popen(["sleep", "30"])
    other = subprocess.Popen(["sleep", "30"])
    try:
        r.add_process(mine.pid, "sleep under test")
        # A record whose start time does not match (a recycled pid) must never be signalled.
        r.add("process", pid=other.pid, start=1, what="stale")
        f = tmp_path / "file"
        f.write_text("x")
        r.add("path", path=str(f))
        counts = remove_recorded(r, grace=2.0)
        assert mine.wait(timeout=5) is not None
        assert other.poll() is None, "an unrecorded process was signalled"
        assert not f.exists()
        assert counts["process"] == 2
    finally:
        for p in (mine, other):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_remove_recorded_also_removes_what_was_recorded_while_stopping(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An agent being stopped may still record a pod's netns it has just made: `down` removes it too."""
    from netkube.lab import cleanup

    r = Records(tmp_path / "r.jsonl")
    r.add("process", pid=2**22 + 4321, start=1, what="agent")  # not alive: stopping it is a no-op
    late = tmp_path / "late"
    stops: list[int] = []

    def stop_and_record(procs, grace):  # type: ignore[no-untyped-def]
        stops.append(len(procs))
        if len(stops) == 1:  # the agent's last act before it exits
            r.add_netns("pod-late")
            late.write_text("x")
            r.add("path", path=str(late))

    deleted: list[str] = []
    monkeypatch.setattr(cleanup, "stop_processes", stop_and_record)
    monkeypatch.setattr(cleanup, "delete_netns", deleted.append)
    counts = remove_recorded(r, grace=0.1)
    assert deleted == ["pod-late"] and not late.exists()
    assert stops == [1] and counts["process"] == 1
