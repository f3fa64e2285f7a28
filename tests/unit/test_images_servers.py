"""The image programs as real processes on 127.0.0.1: exact bodies, keep-alive, clean SIGTERM exit."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netkube.images.registry import prepare_assets, resolve

POD = {"metadata": {"name": "test-pod", "namespace": "default"}}
HOSTNAME = socket.gethostname()  # same UTS namespace as the test process


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, sock: socket.socket | None = None, close: bool = True) -> tuple[int, str, bytes]:
    """Raw HTTP/1.1 GET: (status, headers, body) with the exact bytes of the body."""
    own = sock is None
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        conn = "close" if close else "keep-alive"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk, "connection closed before headers"
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        headers = head.decode("latin-1")
        m = re.search(r"(?im)^content-length:\s*(\d+)", headers)
        if m:
            while len(body) < int(m.group(1)):
                body += s.recv(4096)
        else:
            while chunk := s.recv(4096):
                body += chunk
        return int(headers.split(" ")[1]), headers, body
    finally:
        if own:
            s.close()


@pytest.fixture
def spawn() -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(image: str, container: dict, port: int, assets: Path = Path("/nonexistent")) -> subprocess.Popen:
        argv, env = resolve(image).command(container, POD, assets, sys.executable)
        p = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return p
            except OSError:
                assert p.poll() is None, p.stderr.read().decode() if p.stderr else "exited"
                time.sleep(0.05)
        raise AssertionError(f"{image} did not listen on {port}")

    yield start
    for p in procs:  # only the processes this test started
        if p.poll() is None:
            p.kill()
            p.wait()


AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"


def test_agnhost_netexec(spawn) -> None:
    port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    p = spawn(AGNHOST, {"args": ["netexec", f"--http-port={port}", f"--udp-port={udp_port}", "--bind=127.0.0.1"]},
              port)
    assert http_get(port, "/hostname")[2] == HOSTNAME.encode()
    assert http_get(port, "/echo?msg=hello%20world")[2] == b"hello world"
    assert http_get(port, "/healthz")[0] == 200
    assert re.fullmatch(rb"NOW: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000 UTC m=\+\d+\.\d{9}",
                        http_get(port, "/")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        status, headers, body = http_get(port, "/clientip", sock=s, close=False)
        assert body.decode() == f"127.0.0.1:{s.getsockname()[1]}"
        assert "Connection: keep-alive" in headers
        assert http_get(port, "/echo?msg=again", sock=s)[2] == b"again"  # same connection reused
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(3)
        u.sendto(b"echo udp-works", ("127.0.0.1", udp_port))
        assert u.recv(100) == b"udp-works"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0


def test_agnhost_serve_hostname_and_pause(spawn) -> None:
    port = free_port()
    p = spawn(AGNHOST, {"command": ["/agnhost", "serve-hostname", f"--port={port}", "--bind=127.0.0.1"]}, port)
    assert http_get(port, "/anything")[2] == HOSTNAME.encode()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0
    argv, env = resolve(AGNHOST).command({"args": ["pause"]}, POD, Path("/x"), sys.executable)
    pause = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE)
    try:
        assert pause.stdout is not None and pause.stdout.readline() == b"Paused\n"
        pause.send_signal(signal.SIGTERM)
        assert pause.wait(timeout=5) == 0
    finally:
        if pause.poll() is None:
            pause.kill()
            pause.wait()


@pytest.mark.parametrize("tag,version", [("v1", 1), ("v2", 2)])
def test_bootcamp(spawn, tag: str, version: int) -> None:
    port = free_port()
    image = f"gcr.io/google-samples/kubernetes-bootcamp:{tag}"
    cmd = resolve(image).command({}, POD, Path("/x"), sys.executable)[0]
    p = spawn(image, {"command": [*cmd, "--port", str(port), "--bind", "127.0.0.1"]}, port)
    status, _, body = http_get(port, "/")
    assert status == 200
    assert body == f"Hello Kubernetes bootcamp! | Running on: {HOSTNAME} | v={version}\n".encode()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0


def test_busybox_httpd_serves_it_works(spawn, tmp_path: Path) -> None:
    prepare_assets(tmp_path)
    port = free_port()
    argv, _ = resolve("httpd:2.4").command({}, POD, tmp_path, sys.executable)
    argv[argv.index("-p") + 1] = f"127.0.0.1:{port}"  # the image's own argv, moved to a test port
    p = spawn("busybox", {"command": argv}, port, tmp_path)
    status, _, body = http_get(port, "/")
    assert status == 200 and body == b"<html><body><h1>It works!</h1></body></html>\n"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=5)
