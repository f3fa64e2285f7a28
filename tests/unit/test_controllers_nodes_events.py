"""Node lifecycle marking and event coalescing, on FakeApiClient."""

from __future__ import annotations

import asyncio
import time

from netkube import client as api
from netkube.controllers.base import Informers
from netkube.controllers.events import EventRecorder
from netkube.controllers.nodelifecycle import UNREACHABLE_TAINT, NodeLifecycleController
from netkube.testing import FakeApiClient
from netkube.testing.helpers import node


async def test_silent_node_goes_unknown_and_gets_tainted_then_recovers() -> None:
    fake = FakeApiClient()
    n = node("node2")
    n["status"]["conditions"][0]["lastHeartbeatTime"] = "2020-01-01T00:00:00Z"
    await fake.create(api.NODES, n)
    await fake.create(api.NODES, node("node3"))
    later = time.time() + 100  # node2 was created "now": judge it 100 s later, past the 40 s grace
    n3 = node("node3")["status"]
    n3["conditions"][0]["lastHeartbeatTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(later - 5))
    await fake.patch(api.NODES, "node3", {"status": n3}, sub="status")
    inf = Informers(fake)
    task = asyncio.create_task(inf.nodes.run())
    await inf.nodes.synced.wait()
    ctl = NodeLifecycleController(fake, inf, grace=40.0)
    await ctl.check(later)
    got = await fake.get(api.NODES, "node2")
    ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
    assert [(t["key"], t["effect"]) for t in got["spec"]["taints"]] == [(UNREACHABLE_TAINT, "NoSchedule"),
                                                                        (UNREACHABLE_TAINT, "NoExecute")]
    assert not (await fake.get(api.NODES, "node3"))["spec"]["taints"]  # heartbeating: untouched
    # The kubelet comes back: Ready=True with a fresh heartbeat removes the taint.
    fresh = node("node2")["status"]
    await fake.patch(api.NODES, "node2", {"status": fresh}, sub="status")
    for _ in range(50):
        cached = inf.nodes.get("node2") or {}
        if cached["spec"].get("taints") and cached["status"]["conditions"][0]["status"] == "True":
            break
        await asyncio.sleep(0.01)
    await ctl.check(time.time())
    assert not (await fake.get(api.NODES, "node2"))["spec"].get("taints")
    task.cancel()


async def test_event_recorder_coalesces_repeats() -> None:
    fake = FakeApiClient()
    pod = await fake.create(api.PODS, {"metadata": {"name": "p"}, "spec": {}}, "default")
    rec = EventRecorder(fake, "default-scheduler")
    await rec.warning(pod, "FailedScheduling", "0/1 nodes are available")
    await rec.warning(pod, "FailedScheduling", "0/1 nodes are available")
    await rec.normal(pod, "Scheduled", "Successfully assigned default/p to node2")
    evs = fake.objects(api.EVENTS, "default")
    assert len(evs) == 2
    failed = next(e for e in evs if e["reason"] == "FailedScheduling")
    assert failed["count"] == 2 and failed["type"] == "Warning"
    assert failed["metadata"]["name"].startswith("p.")
    assert failed["involvedObject"]["kind"] == "Pod" and failed["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert failed["source"] == {"component": "default-scheduler"}
    node_obj = await fake.create(api.NODES, node("node9"))
    await rec.normal(node_obj, "X", "y")
    assert any(e["involvedObject"]["name"] == "node9" for e in fake.objects(api.EVENTS, "default"))
