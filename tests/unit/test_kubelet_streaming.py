"""The real kubectl's logs/exec/attach through ThreadedApiServer to a loopback kubelet server (no root)."""

import asyncio
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from netkube.api.testing import ThreadedApiServer
from netkube.kubelet.streaming.server import KubeletServer, local_launcher
from netkube.kubelet.streaming.targets import ContainerRef, PodRef

RUNNING = {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
TERMINATED = {"terminated": {"exitCode": 1, "reason": "Error", "containerID": "netkube://old"}}


class StaticPods:
    """A PodLookup over fixed PodRefs; tests flip `up` to end a container instance."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], PodRef] = {}
        self.up: dict[str, bool] = {}

    def add(self, pod: str, logs: Path, containers: dict[str, dict], last: dict | None = None) -> None:
        ref = PodRef("default", pod, f"uid-{pod}")
        for name, state in containers.items():
            key = f"{pod}/{name}"
            self.up[key] = "running" in state
            ref.containers[name] = ContainerRef(name, logs / f"{pod}-{name}.log", state, last or {},
                                                pid=os.getpid(), alive=lambda k=key: self.up[k])
        self.pods[("default", pod)] = ref

    def find(self, namespace: str, name: str) -> PodRef | None:
        return self.pods.get((namespace, name))


class ThreadedKubelet:
    def __init__(self, pods: StaticPods) -> None:
        self.server = KubeletServer(pods, "127.0.0.1", 0, local_launcher)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> int:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def pod_manifest(name: str, containers: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "node1", "containers": [{"name": c, "image": "busybox"} for c in containers]}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    pods = StaticPods()
    kubelet = ThreadedKubelet(pods)
    port = kubelet.start()
    srv = ThreadedApiServer(str(tmp / "store.sqlite")).start()
    try:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}}
        assert srv.kubectl("create", "-f", "-", stdin=json.dumps(node)).returncode == 0
        status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                             "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}
        r = srv.kubectl("patch", "node", "node1", "--subresource=status", "--type=merge", "-p", json.dumps(status))
        assert r.returncode == 0, r.stderr
        for name, cs in (("web", ["app"]), ("duo", ["a", "b"]), ("crash", ["app"]), ("new", ["app"])):
            r = srv.kubectl("create", "-f", "-", stdin=json.dumps(pod_manifest(name, cs)))
            assert r.returncode == 0, r.stderr
            st = {"status": {"phase": "Running", "containerStatuses": [
                {"name": c, "ready": True, "restartCount": 0, "image": "busybox", "imageID": "",
                 "state": RUNNING} for c in cs]}}
            srv.kubectl("patch", "pod", name, "--subresource=status", "--type=merge", "-p", json.dumps(st))
        pods.add("web", tmp, {"app": RUNNING})
        pods.add("duo", tmp, {"a": RUNNING, "b": RUNNING})
        pods.add("crash", tmp, {"app": RUNNING}, last=TERMINATED)
        pods.add("new", tmp, {"app": {"waiting": {"reason": "ContainerCreating"}}})
        (tmp / "web-app.log").write_text("".join(f"line {i}\n" for i in range(1, 11)))
        (tmp / "duo-a.log").write_text("from a\n")
        (tmp / "crash-app.log").write_text("second run\n")
        (tmp / "crash-app.previous.log").write_text("first run\n")
        yield srv, pods, tmp
    finally:
        srv.stop()
        srv.cleanup()
        kubelet.stop()


def test_discovery_lists_streaming_subresources(env):
    srv, _, _ = env
    out = srv.kubectl("get", "--raw", "/api/v1").stdout
    names = {r["name"]: r for r in json.loads(out)["resources"]}
    assert names["pods/log"]["verbs"] == ["get"]
    for sub in ("exec", "attach"):
        assert names[f"pods/{sub}"]["verbs"] == ["create", "get"]


def test_logs_whole_tail_and_limit(env):
    srv, _, _ = env
    assert srv.kubectl("logs", "web").stdout == "".join(f"line {i}\n" for i in range(1, 11))
    assert srv.kubectl("logs", "web", "--tail", "2").stdout == "line 9\nline 10\n"
    assert srv.kubectl("logs", "web", "--tail", "0").stdout == ""
    assert srv.kubectl("logs", "web", "--limit-bytes", "7").stdout == "line 1\n"


def test_logs_previous_and_errors(env):
    srv, _, _ = env
    assert srv.kubectl("logs", "crash").stdout == "second run\n"
    assert srv.kubectl("logs", "crash", "--previous").stdout == "first run\n"
    r = srv.kubectl("logs", "web", "--previous")
    assert r.returncode == 1
    assert 'previous terminated container "app" in pod "web" not found' in r.stderr
    r = srv.kubectl("logs", "new")
    assert r.stderr.strip() == ('Error from server (BadRequest): container "app" in pod "new" is '
                                "waiting to start: ContainerCreating")
    r = srv.kubectl("logs", "nope")
    assert 'pods "nope" not found' in r.stderr
    r = srv.kubectl("logs", "web", "-c", "zzz")
    assert "container zzz is not valid for pod web" in r.stderr
    raw = srv.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/duo/log")
    assert "a container name must be specified for pod duo, choose one of: [a b]" in raw.stderr
    assert srv.kubectl("logs", "duo", "-c", "a").stdout == "from a\n"


def test_logs_follow_streams_appended_line(env):
    srv, pods, tmp = env
    log = tmp / "web-app.log"
    proc = subprocess.Popen(srv.kubectl_cmd("logs", "-f", "--tail", "1", "web"), stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, HOME=str(tmp)))
    try:
        assert proc.stdout.readline() == "line 10\n"
        with log.open("a") as f:
            f.write("appended later\n")
        start = time.monotonic()
        assert proc.stdout.readline() == "appended later\n"
        assert time.monotonic() - start < 3
        pods.up["web/app"] = False  # the instance ends: the stream ends and kubectl exits
        assert proc.wait(10) == 0
    finally:
        pods.up["web/app"] = True
        proc.kill()
        proc.wait()


def test_exec_output_and_exit_code(env):
    srv, _, _ = env
    r = srv.kubectl("exec", "web", "--", "sh", "-c", "echo out; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")
    r = srv.kubectl("exec", "web", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert srv.kubectl("exec", "web", "--", "/nonexistent-cmd").returncode != 0


def test_exec_stdin_pipe(env):
    srv, _, _ = env
    r = srv.kubectl("exec", "-i", "web", "--", "cat", stdin="hi\n")
    assert (r.returncode, r.stdout) == (0, "hi\n")
    big = "x" * 200000 + "\n"
    assert srv.kubectl("exec", "-i", "web", "--", "wc", "-c", stdin=big).stdout.strip() == "200001"


def test_exec_errors(env):
    srv, _, _ = env
    r = srv.kubectl("exec", "new", "--", "true")
    assert r.returncode == 1 and 'container not found ("app")' in r.stderr
    r = srv.kubectl("exec", "web", "-c", "zzz", "--", "true")
    assert r.returncode == 1 and "zzz" in r.stderr
    r = srv.kubectl("exec", "duo", "-c", "b", "--", "echo", "b")
    assert r.stdout == "b\n"


def test_attach_streams_output(env):
    srv, pods, tmp = env
    proc = subprocess.Popen(srv.kubectl_cmd("attach", "duo", "-c", "a"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, HOME=str(tmp)))
    try:
        time.sleep(1.5)
        with (tmp / "duo-a.log").open("a") as f:
            f.write("while attached\n")
        assert proc.stdout.readline() == "while attached\n"
        pods.up["duo/a"] = False
        assert proc.wait(10) == 0
    finally:
        pods.up["duo/a"] = True
        proc.kill()
        proc.wait()


def test_portforward_is_listed_and_reaches_the_kubelet(env):
    srv, _, _ = env
    out = srv.kubectl("get", "--raw", "/api/v1").stdout
    assert "pods/portforward" in {r["name"] for r in json.loads(out)["resources"]}
    # these fake pods have no netns: the kubelet's refusal reaches kubectl (port-forward works in
    # test_kubelet_portforward.py)
    r = srv.kubectl("port-forward", "pod/web", ":80", timeout=20)
    assert r.returncode == 1 and "pod web has no network namespace yet" in r.stderr, r.stderr


def test_kubelet_dial_leaves_from_node1_netns_only_for_node_addresses(tmp_path):
    from netkube.api.podproxy import PodProxy
    from netkube.config import ClusterConfig

    cluster = ClusterConfig(name=f"nkt-klapi-absent-{os.getpid()}", state_root=str(tmp_path))
    proxy = PodProxy(None, cluster)  # type: ignore[arg-type]
    assert proxy._dial_netns("127.0.0.1") is None
    assert proxy._dial_netns(cluster.node_ip("node2")) is None  # that lab's node1 netns does not exist
    assert PodProxy(None)._dial_netns(cluster.node_ip("node2")) is None  # type: ignore[arg-type]
