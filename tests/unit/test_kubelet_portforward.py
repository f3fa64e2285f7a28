"""The real kubectl port-forward through ThreadedApiServer to a loopback kubelet (no root).

The kubelet's dialer is swapped for one that reaches a local HTTP server instead of localhost
inside a pod's netns; everything else (the WebSocket tunnel, the SPDY/3.1 fallback, the apiserver
relay, our SPDY session and the port-forward pairing) is the code a cluster runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from netkube.api.testing import ThreadedApiServer
from netkube.kubelet.streaming.portforward import netns_dialer
from netkube.kubelet.streaming.server import KubeletServer, local_launcher
from netkube.kubelet.streaming.targets import ContainerRef, PodRef

BIG = 300_000  # bytes: well past SPDY's 64 KiB initial window, which spdystream never updates


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"x" * BIG if self.path == "/big" else f"hello from pf-web {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = f"got {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


class Pods:
    def __init__(self) -> None:
        self.refs = {name: PodRef("default", name, f"uid-{name}", f"/run/netns/fake-{name}",
                                  {"web": ContainerRef("web", os.devnull)})  # type: ignore[arg-type]
                     for name in ("pf-web", "pf-closed")}

    def find(self, namespace: str, name: str) -> PodRef | None:
        return self.refs.get(name) if namespace == "default" else None


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    http = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens here any more: connecting is refused

    def dialer(netns: str):  # type: ignore[no-untyped-def]
        if "pf-closed" in netns:  # the real dialer, on plain loopback sockets
            return netns_dialer(netns, lambda _p, fam: socket.socket(fam, socket.SOCK_STREAM))

        async def dial(port: int):  # type: ignore[no-untyped-def]
            assert port == 80
            return await asyncio.open_connection("127.0.0.1", http.server_address[1])
        return dial

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    kubelet = KubeletServer(Pods(), "127.0.0.1", 0, local_launcher, pf_dialer=dialer)
    asyncio.run_coroutine_threadsafe(kubelet.start(), loop).result(10)
    srv = ThreadedApiServer(str(tmp_path_factory.mktemp("pf") / "store.sqlite")).start()
    try:
        objs = [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pf-web", "namespace": "default"},
             "spec": {"selector": {"app": "pf-web"}, "ports": [{"port": 8080, "targetPort": 80}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pf-web", "namespace": "default"},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "pf-web"}}, "template": {
                 "metadata": {"labels": {"app": "pf-web"}},
                 "spec": {"containers": [{"name": "web", "image": "httpd"}]}}}},
        ]
        for name in ("pf-web", "pf-closed"):
            objs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
                         "spec": {"nodeName": "node1", "containers": [
                             {"name": "web", "image": "httpd", "ports": [{"containerPort": 80}]}]}})
        for obj in objs:
            r = srv.kubectl("create", "-f", "-", stdin=json.dumps(obj))
            assert r.returncode == 0, r.stderr
        status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                             "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}}
        r = srv.kubectl("patch", "node", "node1", "--subresource=status", "--type=merge", "-p", json.dumps(status))
        assert r.returncode == 0, r.stderr
        for name in ("pf-web", "pf-closed"):
            r = srv.kubectl("patch", "pod", name, "--subresource=status", "--type=merge",
                            "-p", json.dumps({"status": {"phase": "Running"}}))
            assert r.returncode == 0, r.stderr
        yield srv, closed_port
    finally:
        srv.stop()
        srv.cleanup()
        asyncio.run_coroutine_threadsafe(kubelet.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        http.shutdown()
        http.server_close()


class PortForward:
    """`kubectl port-forward TARGET :REMOTE` in the background; .port is the local port it chose.

    srv is a ThreadedApiServer or, for a whole cluster, (kubectl argv prefix, environment).
    """

    def __init__(self, srv: ThreadedApiServer | tuple[list[str], dict[str, str]], target: str, remote: int,
                 websockets: bool = True) -> None:
        if isinstance(srv, ThreadedApiServer):
            kubectl = srv.kubectl_cmd()
            env = dict(os.environ, HOME=str(srv.kubeconfig.parent), KUBECONFIG=str(srv.kubeconfig))
        else:
            kubectl, env = srv[0], dict(srv[1])
        # kubectl 1.31+ tunnels SPDY in a WebSocket first; "false" makes it upgrade to SPDY directly
        env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "true" if websockets else "false"
        # -v=4 logs which dialer negotiated the connection (tunneling_dialer.go)
        self.proc = subprocess.Popen([*kubectl, "port-forward", target, f":{remote}", "-v=4"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = 0
        self.first_line = ""
        self.stderr = ""

    def __enter__(self) -> PortForward:
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline()  # blocks until kubectl listens (or exits)
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", self.first_line)
        if m is None:
            self.proc.kill()
            raise AssertionError(f"kubectl port-forward did not start: {self.first_line!r} "
                                 f"{self.proc.communicate(timeout=10)}")
        self.port = int(m.group(1))
        return self

    def get(self, path: str = "/", data: bytes | None = None) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", data, timeout=15) as resp:
            return resp.read()

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.stderr = self.proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stderr = self.proc.communicate()[1]


@pytest.mark.parametrize("websockets", [True, False], ids=["spdy-in-websocket", "spdy-upgrade"])
def test_port_forward_pod_serves_pages_concurrently(env, websockets):
    srv, _ = env
    with PortForward(srv, "pod/pf-web", 80, websockets) as pf:
        assert pf.first_line.endswith(" -> 80\n")
        paths = [f"/page-{i}" for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(pf.get, paths))
        assert bodies == [f"hello from pf-web {p}\n".encode() for p in paths]
        assert pf.get("/big") == b"x" * BIG  # more than one window's worth, in one stream
        upload = os.urandom(BIG)  # the other way: we read it and send WINDOW_UPDATEs, which spdystream ignores
        assert pf.get("/up", upload) == f"got {BIG} bytes, sha256 {hashlib.sha256(upload).hexdigest()}\n".encode()
        assert pf.proc.poll() is None  # still forwarding after all those connections
    # the WebSocket tunnel was really used (kubectl falls back to SPDY silently when it fails)
    assert ("negotiated protocol: portforward.k8s.io" in pf.stderr) is websockets, pf.stderr
    assert "Before WebSocket Upgrade" not in pf.stderr or websockets


@pytest.mark.parametrize("target,remote", [("svc/pf-web", 8080), ("deploy/pf-web", 80)])
def test_port_forward_service_and_deployment_pick_the_pod(env, target, remote):
    srv, _ = env
    with PortForward(srv, target, remote) as pf:
        # kubectl itself turns the Service's port 8080 into the pod's targetPort 80
        assert pf.first_line.endswith(" -> 80\n")
        assert pf.get("/svc") == b"hello from pf-web /svc\n"


def test_port_forward_refused_port_reports_kubelet_error(env):
    srv, port = env  # a loopback port nothing listens on
    with PortForward(srv, "pod/pf-closed", port) as pf:
        with pytest.raises(OSError):
            pf.get("/")
        pf.proc.wait(15)  # kubectl ends the session after an error on the error stream
    err = pf.stderr.replace('\\"', '"')  # klog prints err="..." with its quotes escaped
    assert f"an error occurred forwarding {pf.port} -> {port}: error forwarding port {port} to pod uid-pf-closed, " \
           'uid : failed to execute portforward in network namespace "/run/netns/fake-pf-closed": failed to ' \
           f'connect to localhost:{port} inside namespace "/run/netns/fake-pf-closed", IPv4: dial tcp4 ' \
           f"127.0.0.1:{port}: connect: connection refused IPv6 " in err
    assert "lost connection to pod" in err


def test_port_forward_errors_before_upgrade(env):
    srv, _ = env
    r = srv.kubectl("port-forward", "pod/nope", ":80", timeout=20)
    assert r.returncode == 1 and 'pods "nope" not found' in r.stderr
    r = srv.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/pf-web/portforward")
    assert r.returncode == 1 and "Upgrade request required" in r.stderr
