"""KubeletPods over real pod workers (fake runtime): which log file each instance and option reads."""

import asyncio

import pytest

from netkube.kubelet.streaming.kubeletpods import KubeletPods
from netkube.kubelet.streaming.targets import StreamError, log_file, running
from tests.unit.test_kubelet_lifecycle import Env, until


async def test_restart_keeps_previous_log_and_lookup_follows(tmp_path):
    e = Env(tmp_path)
    task = asyncio.create_task(e.kubelet.run())
    try:
        await e.kubelet.ready.wait()
        await e.pod("web", [{"name": "app", "image": "busybox"}])
        pods = KubeletPods(e.kubelet)
        await until(lambda: (r := pods.find("default", "web")) and "running" in r.containers["app"].state)
        c = pods.find("default", "web").containers["app"]
        assert c.alive() and running(pods, "default", "web", "app")
        with pytest.raises(StreamError, match='previous terminated container "app" in pod "web" not found'):
            log_file("web", c, previous=True)
        c.log_path.write_text("first run\n")  # the fake runtime writes no output: stand in for it

        e.runtime.exit("/app", 1)
        await until(lambda: "terminated" in pods.find("default", "web").containers["app"].last_state
                    and "running" in pods.find("default", "web").containers["app"].state)
        c = pods.find("default", "web").containers["app"]
        assert log_file("web", c, previous=True).read_text() == "first run\n"
        assert not log_file("web", c, previous=False).exists()  # the new instance has written nothing
        assert pods.find("default", "nope") is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_waiting_container_refuses_exec_and_logs(tmp_path):
    e = Env(tmp_path, network=False)  # no CNI config: the sandbox never comes up
    task = asyncio.create_task(e.kubelet.run())
    try:
        await e.kubelet.ready.wait()
        await e.pod("web", [{"name": "app", "image": "busybox"}])
        pods = KubeletPods(e.kubelet)
        await until(lambda: pods.find("default", "web") is not None)
        with pytest.raises(StreamError, match=r'container not found \("app"\)'):
            running(pods, "default", "web", "app")
        c = pods.find("default", "web").containers["app"]
        with pytest.raises(StreamError, match='is waiting to start: ContainerCreating'):
            log_file("web", c, previous=False)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
