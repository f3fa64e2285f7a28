"""Resource limits through the real kubelet and cgroups: a memory hog is OOMKilled, a CPU burner throttled."""

import asyncio
import json
import os
import secrets
from pathlib import Path

import pytest

from netkube.client import PODS
from netkube.kubelet.fakes import FakeImages
from netkube.kubelet.kubelet import Kubelet
from netkube.kubelet.sandbox import Timings
from netkube.testing.fake_api import FakeApiClient
from tests.netns.test_kubelet_pod import NodeNetnsCni, kubelet_node, until

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
# busybox dd reads bs bytes into one buffer: 64 MiB of touched memory against a 32 MiB limit.
HOG = ["/bin/busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
BURN = ["/bin/busybox", "sh", "-c", "while :; do :; done"]


@pytest.fixture
def lab(tmp_path):
    with kubelet_node(tmp_path, f"nkt-cg-{secrets.token_hex(2)}", "10.244.7.0/24") as node:
        yield node


def _status(api: FakeApiClient, name: str) -> dict:
    pods = [p for p in api.objects(PODS, "default") if p["metadata"]["name"] == name]
    return (pods[0].get("status") or {}) if pods else {}


def _container(api: FakeApiClient, name: str) -> dict:
    cs = _status(api, name).get("containerStatuses") or [{}]
    return cs[0]


def _oom_reported(c: dict) -> bool:
    for state in (c.get("lastState") or {}, c.get("state") or {}):
        t = state.get("terminated") or {}
        if t.get("reason") == "OOMKilled" and t.get("exitCode") == 137:
            return True
    return False


async def test_memory_limit_oomkills_and_cpu_limit_throttles(lab):
    cluster, records, node_ns = lab
    api = FakeApiClient()
    kubelet = Kubelet(api, cluster, "node2", "192.168.56.102", records, cni=NodeNetnsCni(node_ns),
                      images=FakeImages({"hog": HOG, "burn": BURN}),
                      timings=Timings(max_grace=1, restart_base=0.2, restart_max=0.5))
    cg = kubelet.ctx.cgroups
    if cg is None:
        pytest.skip(f"no usable cgroups here: {kubelet.cgroups_unavailable}")
    task = asyncio.create_task(kubelet.run())
    try:
        await asyncio.wait_for(kubelet.ready.wait(), 10)
        hog = await api.create(PODS, {"metadata": {"name": "hog", "namespace": "default"}, "spec": {
            "nodeName": "node2", "containers": [{"name": "hog", "image": "hog",
                                                 "resources": {"limits": {"memory": "32Mi"}}}]}})
        burn = await api.create(PODS, {"metadata": {"name": "burn", "namespace": "default"}, "spec": {
            "nodeName": "node2", "containers": [{"name": "burn", "image": "burn",
                                                 "resources": {"limits": {"cpu": "100m"}}}]}})

        await until(lambda: _oom_reported(_container(api, "hog")) and _container(api, "hog")["restartCount"] >= 1, 30)
        assert _container(api, "hog")["lastState"]["terminated"]["reason"] == "OOMKilled"

        await until(lambda: "running" in (_container(api, "burn").get("state") or {}), 15)
        state = json.loads((cluster.node_dir("node2") / "pods" / burn["metadata"]["uid"] / "state.json").read_text())
        pid = state["containers"]["burn"]["pid"]
        rel = f"{cg.pod_rel(burn)}/burn"
        assert any(line.endswith("/" + rel) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        cpu_dir = next(d for d in cg.fs.dirs(rel) if (d / "cpu.stat").exists())
        await asyncio.sleep(1.5)
        stat = dict(line.split() for line in (cpu_dir / "cpu.stat").read_text().splitlines())
        assert int(stat["nr_throttled"]) > 0, stat

        dirs = [d for p in (hog, burn) for d in cg.fs.dirs(cg.pod_rel(p))]
        assert all(d.is_dir() for d in dirs)
        await api.delete(PODS, "hog", "default", grace_period=0)
        await api.delete(PODS, "burn", "default", grace_period=0)
        # The API object may go first (grace 0); the worker then tears the pod down.
        await until(lambda: not api.objects(PODS, "default") and not kubelet.workers, 20)
        assert not any(d.exists() for d in dirs)
        assert not [r for r in records.live() if r.kind == "cgroup" and r.data.get("pod")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
