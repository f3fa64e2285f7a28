"""The docker runtime's parts that need no engine: image build context, image commands, names,
the dockershim sandbox order and the image hand-over in the kubelet (fakes), engine stop."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from netkube.client import PODS
from netkube.config import ClusterConfig, ConfigError
from netkube.images.registry import SOURCE_ROOT
from netkube.kubelet import dockerd
from netkube.kubelet.docker_images import DockerImages
from netkube.kubelet.docker_runtime import NSEXEC_ARGS, container_name, docker_launcher
from netkube.kubelet.fakes import FakeCni, FakeImages, FakeRuntime
from netkube.kubelet.interfaces import ImageMissing, Proc
from netkube.kubelet.kubelet import Kubelet
from netkube.kubelet.sandbox import Timings
from netkube.kubelet.streaming.targets import ContainerRef
from netkube.lab.records import Records, process_start_time
from netkube.testing.fake_api import FakeApiClient

POD = {"metadata": {"name": "p", "namespace": "default"}, "spec": {}}


def fake_busybox(tmp: Path) -> Path:
    exe = tmp / "busybox"
    exe.write_text("#!/bin/sh\nprintf 'sh\\nhttpd\\nsleep\\nbusybox\\n'\n")
    exe.chmod(0o755)
    return exe


def test_image_context_is_from_scratch_with_busybox_applets_and_web_roots(tmp_path: Path) -> None:
    exe = fake_busybox(tmp_path)
    tar = tarfile.open(fileobj=io.BytesIO(dockerd.image_context(str(exe))))
    names = {m.name: m for m in tar.getmembers()}
    dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
    assert dockerfile.splitlines()[0] == "FROM scratch"
    assert 'CMD ["sh"]' in dockerfile
    assert tar.extractfile("rootfs/bin/busybox").read() == exe.read_bytes()  # type: ignore[union-attr]
    for applet in ("sh", "httpd", "sleep"):
        assert names[f"rootfs/bin/{applet}"].issym() and names[f"rootfs/bin/{applet}"].linkname == "busybox"
    assert "rootfs/bin/busybox" in names and not names["rootfs/bin/busybox"].issym()
    page = tar.extractfile("rootfs/usr/local/apache2/htdocs/index.html").read()  # type: ignore[union-attr]
    assert b"It works!" in page
    assert "rootfs/usr/share/nginx/html/index.html" in names
    script = tar.extractfile("rootfs/usr/local/bin/httpd-foreground").read().decode()  # type: ignore[union-attr]
    assert "exec httpd -f -p 80 -h /usr/local/apache2/htdocs" in script
    assert names["rootfs/usr/local/bin/httpd-foreground"].mode & 0o111
    assert names["rootfs/tmp"].mode == 0o1777


def test_dockerd_is_started_without_touching_host_networking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dockerd.shutil, "which", lambda name: f"/usr/sbin/{name}")
    argv = dockerd.dockerd_argv(tmp_path / "data", Path("/run/netkube-docker/x"))
    for flag in ("--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false"):
        assert flag in argv
    assert argv[argv.index("-H") + 1] == "unix:///run/netkube-docker/x/docker.sock"
    assert argv[argv.index("--data-root") + 1] == str(tmp_path / "data")
    monkeypatch.setattr(dockerd.shutil, "which", lambda name: None)
    with pytest.raises(dockerd.EngineError, match="docker.io"):
        dockerd.dockerd_argv(tmp_path, tmp_path)


def test_image_commands_follow_kubernetes_command_and_args_rules() -> None:
    images = DockerImages("sha256:abc")
    httpd = images.resolve("httpd:2.4")
    assert httpd.command({}, POD)[0] == ["httpd-foreground"]
    assert httpd.image_id == "sha256:abc" and httpd.binds == []
    assert images.resolve("nginx").command({}, POD)[0] == ["nginx", "-g", "daemon off;"]
    busybox = images.resolve("busybox")
    assert busybox.command({}, POD)[0] == ["sh"]
    argv, env = busybox.command({"command": ["sh", "-c", "echo $(GREETING)"], "env": [{"name": "GREETING", "value": "hi"}]}, POD)
    assert argv == ["sh", "-c", "echo hi"]
    assert env["PATH"].endswith("/bin") and "PYTHONPATH" not in env
    assert busybox.command({"args": ["sleep", "5"]}, POD)[0] == ["sleep", "5"]


def test_python_images_run_host_python_with_readonly_binds() -> None:
    agnhost = DockerImages().resolve("registry.k8s.io/e2e-test-images/agnhost:2.39")
    argv, env = agnhost.command({"args": ["netexec", "--http-port=8080"]}, POD)
    assert argv == [sys.executable, "-m", "netkube.images.agnhost", "netexec", "--http-port=8080"]
    assert env["PYTHONPATH"] == SOURCE_ROOT
    assert "/usr:/usr:ro" in agnhost.binds
    assert all(b.endswith(":ro") for b in agnhost.binds)
    bound = [b.split(":")[0] for b in agnhost.binds]
    for path in (sys.prefix, SOURCE_ROOT):
        assert any(Path(path).is_relative_to(b) for b in bound), (path, bound)
    alias = agnhost.command({"command": ["/agnhost", "pause"]}, POD)[0]
    assert alias == [sys.executable, "-m", "netkube.images.agnhost", "pause"]


def test_unknown_image_fails_the_pull() -> None:
    with pytest.raises(ImageMissing, match="not found"):
        DockerImages().resolve("example.com/nothing:1")


def test_container_names_follow_dockershim() -> None:
    pause = container_name("pause kube-system/coredns-1")
    app = container_name("container default/web-1/httpd")
    assert pause.startswith("k8s_POD_coredns-1_kube-system_")
    assert app.startswith("k8s_httpd_web-1_default_")
    assert container_name("pause default/p") != container_name("pause default/p")  # unique per attempt


def test_docker_launcher_preloads_what_execvpe_needs_before_setns() -> None:
    argv, env, _ = docker_launcher(ContainerRef("c", Path("/dev/null"), pid=os.getpid()), ["hostname"])
    assert argv[0] == sys.executable and argv[1:1 + len(NSEXEC_ARGS)] == NSEXEC_ARGS
    assert "warnings" in NSEXEC_ARGS[-1]
    assert argv[-2:] == ["--", "hostname"]
    assert argv[argv.index("--target") + 1] == str(os.getpid())
    assert env["PATH"]


def test_runtime_must_be_known() -> None:
    ClusterConfig(runtime="docker").validate()
    with pytest.raises(ConfigError, match="--runtime"):
        ClusterConfig(runtime="rkt").validate()


class OrderCni(FakeCni):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    async def add(self, conflist: Path, container_id: str, netns_path: str, args: dict[str, str],
                  runtime_config: dict[str, Any] | None = None) -> dict[str, Any]:
        self.events.append("cni add")
        return await super().add(conflist, container_id, netns_path, args, runtime_config)


class ImageRuntime(FakeRuntime):
    """A FakeRuntime with the docker runtime's two traits."""

    pause_before_cni = True
    runs_images = True

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.hosts_at_pause = ""

    async def start_pause(self, netns_path: str | None, hostname: str | None, binds: list[tuple[str, str]],
                          log_path: Path, what: str) -> Proc:
        self.hosts_path = dict((dst, src) for src, dst in binds)["/etc/hosts"]
        self.hosts_at_pause = Path(self.hosts_path).read_text()
        return await super().start_pause(netns_path, hostname, binds, log_path, what)

    async def start_container(self, target: Proc, argv: list[str], env: dict[str, str], cwd: str | None,
                              log_path: Path, what: str, stdin: bool = False, tty: bool = False,
                              image: Any = None) -> Proc:
        self.images.append(image.name)
        return await super().start_container(target, argv, env, cwd, log_path, what, stdin, tty)


async def test_pause_comes_before_cni_and_the_image_reaches_the_runtime(tmp_path: Path) -> None:
    cluster = ClusterConfig(name="t", nodes=2, state_root=str(tmp_path))
    netd = cluster.node_dir("node2") / "cni" / "net.d"
    netd.mkdir(parents=True)
    (netd / "10-flannel.conflist").write_text('{"name": "cbr0", "plugins": [{"type": "flannel"}]}')
    api = FakeApiClient()
    runtime = ImageRuntime()
    fast = Timings(restart_base=0.2, restart_max=0.8, image_base=0.1, image_max=0.2, sandbox_retry=0.05,
                   max_grace=0.3, heartbeat=0.05)
    kubelet = Kubelet(api, cluster, "node2", "192.168.56.102", Records(cluster.records_path), cni=OrderCni(runtime.events),
                      images=FakeImages({"busybox": ["sleep", "1d"]}), runtime=runtime, timings=fast)
    task = asyncio.create_task(kubelet.run())
    try:
        await asyncio.wait_for(kubelet.ready.wait(), 5)
        await api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                                "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "busybox"}]}})
        for _ in range(500):
            if runtime.images:
                break
            await asyncio.sleep(0.01)
        order = [e.split()[0] + (" " + e.split()[1] if e.startswith("cni") else "") for e in runtime.events]
        assert order[:4] == ["netns+", "pause+", "cni add", "start"], runtime.events
        assert runtime.images == ["busybox"]
        assert "\tp\n" not in runtime.hosts_at_pause  # no IP yet when the pause started ...
        assert "10.244.1.2\tp\n" in Path(runtime.hosts_path).read_text()  # ... rewritten in place after ADD
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_stop_recorded_engines_stops_only_a_live_recorded_dockerd(tmp_path: Path) -> None:
    records = Records(tmp_path / "records.jsonl")
    other = subprocess.Popen(["sleep", "30"])
    engine = subprocess.Popen(["sleep", "30"])
    try:
        records.add_process(other.pid, "netkube agent node1")
        records.add("process", pid=999999, start=1, what="dockerd")  # long gone: skipped
        records.add_process(engine.pid, "dockerd")
        assert dockerd.stop_recorded_engines(records, timeout=5) == 1
        assert process_start_time(engine.pid) is None  # stopped (and reaped: it was our child)
        assert other.poll() is None
    finally:
        for p in (other, engine):
            p.kill()
            p.wait()
