"""Real kubectl port-forward into a real pod (own netns) run by the Kubelet (root; own namespaces).

kubectl's connections go kubectl -> apiserver (WebSocket or SPDY) -> kubelet (SPDY) -> localhost:80
inside the pod's netns, where the pod serves HTTP.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from netkube.client import PODS, SERVICES, ApiClient
from netkube.kubelet.fakes import FakeImages
from netkube.kubelet.kubelet import Kubelet
from netkube.kubelet.sandbox import Timings
from tests.netns.test_kubelet_pod import NodeNetnsCni, sh
from tests.netns.test_kubelet_streaming import PATH_ENV, lab, stop_kubelet  # noqa: F401 (the fixture)
from tests.unit.test_kubelet_portforward import PortForward

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

# Answers with the pod's hostname (its name, in its own UTS namespace) and the path asked for.
SERVER = """
import http.server, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from %s %s\\n" % (socket.gethostname(), self.path)).encode()
        if self.path == "/big":
            body = b"b" * 500000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("serving", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
"""


async def test_kubectl_port_forward_into_a_real_pod(lab):  # noqa: F811
    cluster, records, node_ns, srv = lab
    images = FakeImages({"pfweb": ["python3", "-c", SERVER]})
    api = ApiClient(srv.url)
    kubelet = Kubelet(api, cluster, "node2", "127.0.0.1", records, cni=NodeNetnsCni(node_ns), images=images,
                      timings=Timings(max_grace=1, heartbeat=1), port=0)
    task = asyncio.create_task(kubelet.run())
    try:
        await asyncio.wait_for(kubelet.ready.wait(), 10)
        await api.create(PODS, {"metadata": {"name": "pfweb-0", "namespace": "default", "labels": {"app": "pfweb"}},
                                "spec": {"nodeName": "node2", "containers": [
                                    {"name": "web", "image": "pfweb", "env": PATH_ENV,
                                     "ports": [{"containerPort": 80}]}]}})
        await api.create(SERVICES, {"metadata": {"name": "pfweb", "namespace": "default"},
                                    "spec": {"selector": {"app": "pfweb"}, "ports": [{"port": 8080, "targetPort": 80}]}})
        end = time.monotonic() + 30
        while True:
            r = await asyncio.to_thread(srv.kubectl, "logs", "pfweb-0")
            if r.stdout.startswith("serving"):
                break
            assert time.monotonic() < end, r
            await asyncio.sleep(0.3)
        # Debian's reference bridge plugin (this lab's CNI) leaves the pod's lo down; containerd
        # runs the loopback plugin for that, netkube's own bridge plugin sets it up itself.
        (worker,) = kubelet.workers.values()
        sh("ip", "-n", worker.state.netns, "link", "set", "lo", "up")

        def forward_and_fetch(target: str, remote: int, websockets: bool) -> tuple[str, list[bytes], bytes]:
            with PortForward(srv, target, remote, websockets) as pf:
                paths = [f"/p{i}" for i in range(6)]
                with ThreadPoolExecutor(6) as pool:
                    pages = list(pool.map(pf.get, paths))
                return pf.first_line, pages, pf.get("/big")

        for target, remote, websockets in (("pod/pfweb-0", 80, True), ("pod/pfweb-0", 80, False),
                                           ("svc/pfweb", 8080, True)):
            line, pages, big = await asyncio.to_thread(forward_and_fetch, target, remote, websockets)
            assert line.endswith(" -> 80\n"), line
            assert pages == [f"hello from pfweb-0 /p{i}\n".encode() for i in range(6)], (target, websockets)
            assert big == b"b" * 500000

        # nothing listens on 81 in the pod: the kubelet's dial inside its netns is refused
        def refused() -> str:
            with PortForward(srv, "pod/pfweb-0", 81) as pf:
                with pytest.raises(OSError):
                    pf.get("/")
                pf.proc.wait(15)
            return pf.stderr.replace('\\"', '"')

        err = await asyncio.to_thread(refused)
        assert "error forwarding port 81 to pod" in err and "dial tcp4 127.0.0.1:81: connect: connection refused" in err
    finally:
        await stop_kubelet(task, kubelet, api)
