"""Kubelet pod lifecycle against FakeApiClient and fake runtime/CNI/images (no root)."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from netkube.client import NODES, PODS
from netkube.config import ClusterConfig
from netkube.kubelet import podstate
from netkube.kubelet.fakes import FakeCni, FakeImages, FakeRuntime
from netkube.kubelet.kubelet import Kubelet
from netkube.kubelet.sandbox import Timings
from netkube.lab.records import Records
from netkube.testing.fake_api import FakeApiClient

FAST = Timings(restart_base=0.2, restart_max=0.8, image_base=0.1, image_max=0.2, sandbox_retry=0.05,
               max_grace=0.3, heartbeat=0.05)


class Env:
    def __init__(self, tmp: Path, network: bool = True, **rt) -> None:
        self.cluster = ClusterConfig(name="t", nodes=2, state_root=str(tmp))
        self.api = FakeApiClient()
        self.runtime = FakeRuntime(**rt)
        self.cni = FakeCni()
        self.images = FakeImages({"busybox": ["sleep", "1d"], "nginx": ["nginx"]})
        self.netd = self.cluster.node_dir("node2") / "cni" / "net.d"
        self.netd.mkdir(parents=True)
        if network:
            self.add_conflist()
        self.kubelet = self.new_kubelet()

    def add_conflist(self) -> None:
        (self.netd / "10-flannel.conflist").write_text('{"name": "cbr0", "plugins": [{"type": "flannel"}]}')

    def new_kubelet(self) -> Kubelet:
        return Kubelet(self.api, self.cluster, "node2", "192.168.56.102", Records(self.cluster.records_path),
                       cni=self.cni, images=self.images, runtime=self.runtime, timings=FAST)

    async def pod(self, name: str, containers: list[dict], **spec) -> dict:
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": {"nodeName": "node2", "containers": containers, **spec}}
        return await self.api.create(PODS, obj)

    def get(self, name: str) -> dict | None:
        found = [p for p in self.api.objects(PODS, "default") if p["metadata"]["name"] == name]
        return found[0] if found else None


async def until(pred: Callable[[], object], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def cstatus(pod: dict | None, i: int = 0) -> dict:
    return ((pod or {}).get("status") or {}).get("containerStatuses", [{}])[i] if pod else {}


@pytest.fixture
async def env(tmp_path):
    e = Env(tmp_path)
    task = asyncio.create_task(e.kubelet.run())
    await asyncio.wait_for(e.kubelet.ready.wait(), 5)
    yield e
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_node_registration_and_readiness(tmp_path):
    e = Env(tmp_path, network=False)
    task = asyncio.create_task(e.kubelet.run())
    try:
        await until(lambda: e.api.objects(NODES))
        node = e.api.objects(NODES)[0]
        assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "netkube://0.1.0"
        assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "192.168.56.102"}
        ready = lambda: {c["type"]: c for c in e.api.objects(NODES)[0]["status"]["conditions"]}["Ready"]  # noqa: E731
        assert ready()["status"] == "False" and "cni plugin not initialized" in ready()["message"]
        e.add_conflist()
        await until(lambda: ready()["status"] == "True")
        assert ready()["reason"] == "KubeletReady"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pod_runs_and_reports_status(env):
    created = await env.pod("web", [{"name": "app", "image": "busybox", "env": [{"name": "X", "value": "y"}]}])
    uid = created["metadata"]["uid"]
    await until(lambda: (env.get("web") or {}).get("status", {}).get("phase") == "Running")
    st = env.get("web")["status"]
    assert st["podIP"] == "10.244.1.2" and st["podIPs"] == [{"ip": "10.244.1.2"}]
    assert st["hostIP"] == "192.168.56.102"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True", "PodScheduled": "True"}
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["containerID"].startswith("netkube://") and len(cs["containerID"]) == len("netkube://") + 64
    assert env.cni.calls[0] == ("ADD", uid, {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web",
                                             "K8S_POD_INFRA_CONTAINER_ID": uid, "K8S_POD_UID": uid})
    proc = env.runtime.running("default/web/app")[0]
    assert proc.env["X"] == "y" and proc.env["HOSTNAME"] == "web" and proc.env["KUBERNETES_SERVICE_PORT"] == "443"
    pod_dir = env.cluster.node_dir("node2") / "pods" / uid
    assert (pod_dir / "resolv.conf").read_text().startswith("search default.svc.cluster.local")
    state = json.loads((pod_dir / "state.json").read_text())
    assert state["pod_ip"] == "10.244.1.2" and state["containers"]["app"]["pid"] == proc.proc.pid
    with pytest.raises(podstate.ExecTargetError, match="'app' of pod default/web is not running"):
        podstate.find_exec_target(env.cluster, "node2", uid, "app")  # fake pid: no such process in /proc


def test_find_exec_target(tmp_path):
    import os

    from netkube.lab.records import process_start_time

    cluster = ClusterConfig(name="t", state_root=str(tmp_path))
    d = podstate.pods_dir(cluster, "node2") / "u1"
    d.mkdir(parents=True)
    me = os.getpid()
    st = podstate.PodState("u1", "default", "web", pause_pid=me, pause_start=process_start_time(me) or 0)
    st.containers["app"] = podstate.ContainerRecord(pid=me, start=(process_start_time(me) or 0) + 1)  # pid reused
    podstate.save(d / "state.json", st)
    assert podstate.find_exec_target(cluster, "node2", "u1", None) == me  # falls back to the pause
    with pytest.raises(podstate.ExecTargetError, match="not running"):
        podstate.find_exec_target(cluster, "node2", "u1", "app")
    with pytest.raises(podstate.ExecTargetError, match=r"containers: app"):
        podstate.find_exec_target(cluster, "node2", "u1", "nope")
    with pytest.raises(podstate.ExecTargetError, match="no state"):
        podstate.find_exec_target(cluster, "node2", "u2", None)


async def test_crashloop_backoff_and_restart_count(env):
    await env.pod("crash", [{"name": "c", "image": "busybox"}])
    await until(lambda: env.runtime.running("default/crash/c"))
    env.runtime.exit("default/crash/c", 3)  # first crash: restarted at once
    await until(lambda: cstatus(env.get("crash")).get("restartCount") == 1 and "running" in cstatus(env.get("crash"))["state"])
    cs = cstatus(env.get("crash"))
    assert cs["lastState"]["terminated"]["exitCode"] == 3 and cs["lastState"]["terminated"]["reason"] == "Error"
    env.runtime.exit("default/crash/c", 1)  # second crash: CrashLoopBackOff for restart_base
    await until(lambda: cstatus(env.get("crash"))["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff")
    pod = env.get("crash")
    msg = cstatus(pod)["state"]["waiting"]["message"]
    assert msg == f"back-off 0.2s restarting failed container=c pod=crash_default({pod['metadata']['uid']})"
    assert pod["status"]["phase"] == "Running" and cstatus(pod)["restartCount"] == 1
    assert {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]["reason"] == "ContainersNotReady"
    t0 = asyncio.get_running_loop().time()
    await until(lambda: cstatus(env.get("crash")).get("restartCount") == 2)
    assert asyncio.get_running_loop().time() - t0 >= 0.1


async def test_restart_policy_never_and_onfailure(env):
    await env.pod("job", [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}], restartPolicy="Never")
    await until(lambda: len(env.runtime.running("default/job/a")) == 1 and len(env.runtime.running("default/job/b")) == 1)
    env.runtime.exit("default/job/a", 0)
    env.runtime.exit("default/job/b", 2)
    await until(lambda: env.get("job")["status"].get("phase") == "Failed")
    await env.pod("ok", [{"name": "a", "image": "busybox"}], restartPolicy="OnFailure")
    await until(lambda: env.runtime.running("default/ok/a"))
    env.runtime.exit("default/ok/a", 0)
    await until(lambda: env.get("ok")["status"].get("phase") == "Succeeded")
    assert cstatus(env.get("ok"))["state"]["terminated"]["reason"] == "Completed"
    assert not env.runtime.running("default/ok/a")


async def test_image_pull_error_flow(env):
    seen: list[str] = []
    orig = env.api.patch

    async def spy(res, name, patch, namespace=None, sub=None, **kw):
        if res is PODS and sub == "status":
            for cs in patch["status"].get("containerStatuses", []):
                seen.append(cs["state"].get("waiting", {}).get("reason", "?"))
        return await orig(res, name, patch, namespace, sub, **kw)

    env.api.patch = spy
    await env.pod("bad", [{"name": "c", "image": "nosuch:1.0"}])
    await until(lambda: seen.count("ImagePullBackOff") >= 2)
    pod = env.get("bad")
    assert pod["status"]["phase"] == "Pending"
    assert seen[seen.index("ErrImagePull") + 1] == "ImagePullBackOff"
    assert 'Back-off pulling image "nosuch:1.0"' in cstatus(pod)["state"]["waiting"]["message"]
    env.images.known["nosuch:1.0"] = ["x"]  # the image appears: the retry starts it
    await until(lambda: env.get("bad")["status"]["phase"] == "Running")


async def test_graceful_delete_sequence(tmp_path):
    e = Env(tmp_path, ignore_term={"stubborn"})
    task = asyncio.create_task(e.kubelet.run())
    try:
        await asyncio.wait_for(e.kubelet.ready.wait(), 5)
        created = await e.pod("p", [{"name": "nice", "image": "busybox"}, {"name": "stubborn", "image": "busybox"}])
        uid = created["metadata"]["uid"]
        await until(lambda: (e.get("p") or {}).get("status", {}).get("phase") == "Running")
        await e.api.delete(PODS, "p", "default", grace_period=5)  # capped to max_grace (0.3 s)
        await until(lambda: e.get("p") is None)
        ev = [x for x in e.runtime.events if x.startswith("kill")]
        assert ev[:2] == ["kill container default/p/nice 15", "kill container default/p/stubborn 15"]
        assert ev[2:] == ["kill container default/p/stubborn 9", "kill pause default/p 9"]
        assert e.runtime.netns == set() and e.cni.attached == {}
        assert [c[0] for c in e.cni.calls] == ["ADD", "DEL"]
        assert not (e.cluster.node_dir("node2") / "pods" / uid).exists()
        assert not any(p for p in e.runtime.procs.values() if not p.exit.done())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_delete_while_sandbox_not_ready(tmp_path):
    e = Env(tmp_path, network=False)  # no conflist: the sandbox keeps failing and retrying
    task = asyncio.create_task(e.kubelet.run())
    try:
        await asyncio.wait_for(e.kubelet.ready.wait(), 5)
        await e.pod("early", [{"name": "c", "image": "busybox"}])
        await asyncio.sleep(0.2)
        await e.api.delete(PODS, "early", "default")
        await until(lambda: e.get("early") is None)
        assert e.runtime.netns == set() and not e.runtime.procs
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_restart_adopts_live_pods_and_cleans_stale(tmp_path):
    e = Env(tmp_path)
    task = asyncio.create_task(e.kubelet.run())
    await asyncio.wait_for(e.kubelet.ready.wait(), 5)
    keep = await e.pod("keep", [{"name": "c", "image": "busybox"}])
    gone = await e.pod("gone", [{"name": "c", "image": "busybox"}])
    await until(lambda: e.runtime.running("default/keep/c") and e.runtime.running("default/gone/c"))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert e.runtime.running("default/keep/c")  # stopping the kubelet leaves pods running
    # While the kubelet is down, "gone" is force-deleted from the API.
    e.api.graceful_pod_delete = False
    await e.api.delete(PODS, "gone", "default")
    starts = len([x for x in e.runtime.events if x.startswith("start")])
    k2 = e.new_kubelet()
    task = asyncio.create_task(k2.run())
    try:
        await asyncio.wait_for(k2.ready.wait(), 5)
        await until(lambda: not e.runtime.running("default/gone/c"))
        assert e.runtime.netns == {e.cluster.pod_netns(keep["metadata"]["uid"])}
        assert not (e.cluster.node_dir("node2") / "pods" / gone["metadata"]["uid"]).exists()
        await asyncio.sleep(0.1)
        assert len([x for x in e.runtime.events if x.startswith("start")]) == starts  # adopted, not restarted
        e.runtime.exit("default/keep/c", 7)  # the adopted container still gets restarted
        await until(lambda: cstatus(e.get("keep")).get("restartCount") == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
