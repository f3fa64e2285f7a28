"""Real kubectl exec/attach/logs into a real pod run by the Kubelet (root; own namespaces)."""

import asyncio
import fcntl
import json
import os
import pty
import secrets
import select
import signal
import termios
import time

import pytest

from netkube.api.testing import ThreadedApiServer
from netkube.client import PODS, ApiClient
from netkube.kubelet.fakes import FakeImages
from netkube.kubelet.kubelet import Kubelet
from netkube.kubelet.sandbox import Timings
from tests.netns.test_kubelet_pod import NodeNetnsCni, kubelet_node

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
PATH_ENV = [{"name": "PATH", "value": "/usr/sbin:/usr/bin:/sbin:/bin"}]


@pytest.fixture
def lab(tmp_path):
    with kubelet_node(tmp_path, f"nkt-klapi-{secrets.token_hex(2)}", "10.244.1.0/24") as (cluster, records, node_ns):
        srv = ThreadedApiServer(str(tmp_path / "store.sqlite")).start()
        try:
            yield cluster, records, node_ns, srv
        finally:
            srv.stop()
            srv.cleanup()


async def stop_kubelet(task: asyncio.Task, kubelet: Kubelet, api: ApiClient) -> None:
    """Stop the kubelet's loop, end its pods' workers (their containers go), close its client."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for w in list(kubelet.workers.values()):
        w.vanish()
        await asyncio.wait_for(w.done.wait(), 10)
    await api.close()


def run_in_pty(cmd: list[str], env: dict, keys: list[bytes], timeout: float = 15,
               prompt: bool = True, stop: bytes | None = None) -> tuple[int, str]:
    """Run cmd with a pseudo-terminal as its controlling tty, type keys, return (exit code, screen)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(cmd[0], cmd, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")  # 24 rows x 80 cols
    out, end, pending = b"", time.monotonic() + timeout, list(keys)
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.3)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if stop is not None and stop in out:
                    break  # seen what we waited for; kubectl attach itself never exits on its own
            elif pending and (b"# " in out or b"$ " in out or not prompt):
                os.write(fd, pending.pop(0))
        for _ in range(0 if stop is not None and stop in out else 20):
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return os.waitstatus_to_exitcode(status), out.decode(errors="replace")
            time.sleep(0.1)
        return -1, out.decode(errors="replace")  # still running: the finally kills it
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


async def test_kubectl_exec_attach_logs_in_real_pod(lab):
    cluster, records, node_ns, srv = lab
    images = FakeImages({"sleeper": ["/bin/sh", "-c", "echo started; exec sleep 3600"],
                         "shell": ["/bin/sh"]})
    api = ApiClient(srv.url)
    kubelet = Kubelet(api, cluster, "node2", "127.0.0.1", records, cni=NodeNetnsCni(node_ns), images=images,
                      timings=Timings(max_grace=1, heartbeat=1), port=0)
    task = asyncio.create_task(kubelet.run())
    kubectl = lambda *a, **kw: asyncio.to_thread(srv.kubectl, *a, **kw)  # noqa: E731
    try:
        await asyncio.wait_for(kubelet.ready.wait(), 10)
        for name, image, extra in (("web-0", "sleeper", {}), ("tty-0", "shell", {"stdin": True, "tty": True})):
            await api.create(PODS, {"metadata": {"name": name, "namespace": "default"}, "spec": {
                "nodeName": "node2", "containers": [{"name": "main", "image": image, "env": PATH_ENV, **extra}]}})
        end = time.monotonic() + 20
        while True:
            r = await kubectl("get", "pods", "-o", "jsonpath={.items[*].status.phase}")
            if r.stdout.split() == ["Running", "Running"]:
                break
            assert time.monotonic() < end, r
            await asyncio.sleep(0.2)
        node = json.loads((await kubectl("get", "node", "node2", "-o", "json")).stdout)
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == kubelet.server.port

        r = await kubectl("exec", "web-0", "--", "hostname")
        assert (r.returncode, r.stdout) == (0, "web-0\n"), r.stderr
        r = await kubectl("exec", "web-0", "--", "sh", "-c", "exit 3")
        assert r.returncode == 3
        r = await kubectl("exec", "-i", "web-0", "--", "cat", stdin="hi\n")
        assert r.stdout == "hi\n"
        assert (await kubectl("logs", "web-0")).stdout == "started\n"

        env = dict(os.environ, HOME=str(srv.kubeconfig.parent), TERM="dumb")
        code, screen = await asyncio.to_thread(
            run_in_pty, srv.kubectl_cmd("exec", "-it", "web-0", "--", "sh"), env,
            [b"tty; stty size; hostname\n", b"exit 5\n"])
        assert code == 5, screen
        assert "/dev/pts/" in screen and "24 80" in screen and "web-0" in screen

        # attach to a stdin+tty container: keys reach its shell through the pty the kubelet holds
        code, screen = await asyncio.to_thread(
            run_in_pty, srv.kubectl_cmd("attach", "-it", "tty-0"), env,
            [b"\n", b"echo attached-$((40+2))\n"], 10, prompt=False, stop=b"attached-42")
        assert "attached-42" in screen, screen
    finally:
        await stop_kubelet(task, kubelet, api)
