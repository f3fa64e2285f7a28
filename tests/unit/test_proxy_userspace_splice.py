"""userspace mode's TCP relay over loopback: bulk data intact both ways, half-close passed on, dial
retries on the next endpoint, no endpoint closes the client, every socket closed afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from proxy_modes.userspace.loadbalancer import RoundRobin
from proxy_modes.userspace.proxysocket import TcpProxy


def _digest_server() -> tuple[socket.socket, threading.Thread]:
    """Reads until the client's FIN, then answers with the sha256 of what came and closes."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                h = hashlib.sha256()
                while chunk := c.recv(1 << 16):
                    h.update(chunk)
                c.sendall(h.hexdigest().encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Iterator[str]:
    srv, _ = _digest_server()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


async def _proxy(endpoints: list[str]) -> tuple[TcpProxy, int]:
    lb = RoundRobin()
    lb.update("svc", endpoints, None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    proxy = TcpProxy("svc", lb, sock)
    await proxy.start()
    return proxy, sock.getsockname()[1]


def _send_all_then_read(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # half-close: the answer must still come back
        out = b""
        while chunk := c.recv(1 << 16):
            out += chunk
        return out


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_bulk_data_intact_and_half_close(server: str) -> None:
    proxy, port = await _proxy([server])
    payload = os.urandom(8 << 20)
    try:
        answer = await asyncio.to_thread(_send_all_then_read, port, payload)
    finally:
        proxy.close()
    assert answer == hashlib.sha256(payload).hexdigest().encode()


async def test_dial_retries_the_next_endpoint(server: str) -> None:
    dead = f"127.0.0.1:{_free_port()}"  # nothing listens: connection refused
    proxy, port = await _proxy([dead, server])
    try:
        answers = [await asyncio.to_thread(_send_all_then_read, port, b"x" * n) for n in (1, 2, 3, 4)]
    finally:
        proxy.close()
    assert answers == [hashlib.sha256(b"x" * n).hexdigest().encode() for n in (1, 2, 3, 4)]


def _ended(port: int) -> bool:
    """True once the proxy closed the connection (FIN or RST) without sending anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        try:
            return c.recv(100) == b""
        except ConnectionResetError:
            return True


async def test_no_endpoint_closes_the_client() -> None:
    proxy, port = await _proxy([f"127.0.0.1:{_free_port()}"])  # every dial refused
    try:
        assert await asyncio.to_thread(_ended, port)
    finally:
        proxy.close()


async def test_sockets_are_closed_after_each_connection(server: str) -> None:
    proxy, port = await _proxy([server])
    before = _open_fds()
    try:
        for _ in range(50):
            assert await asyncio.to_thread(_send_all_then_read, port, b"ping")
        for _ in range(100):  # the proxy closes its two sockets once both sides said FIN
            if _open_fds() <= before:
                break
            await asyncio.sleep(0.01)
    finally:
        proxy.close()
    assert _open_fds() <= before


def test_partial_sync_rewrites_portals_only_when_services_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy_modes.kernel import rules as iptables_rules
    from proxy_modes.kernel.iptables_fake import FakeIptables
    from proxy_modes.model import Endpoint, ProxyState, ServicePort, ServicePortName
    from proxy_modes.userspace.proxier import UserspaceProxier

    monkeypatch.setitem(iptables_rules.TARGET_OPTS, "REDIRECT", {"--to-ports": True})
    restores: list[str] = []

    class Counting(FakeIptables):
        def restore(self, text: str, noflush: bool = True) -> None:
            if text.startswith("*nat\n:KUBE-PORTALS-CONTAINER"):  # the portals (not the fake's own helpers)
                restores.append(text)
            super().restore(text, noflush)

    spn = [ServicePortName("ns1", f"svc{i}", "p", "TCP") for i in range(3)]
    state = ProxyState()
    for i, s in enumerate(spn):
        state.services[s] = ServicePort(s, f"172.30.0.{i + 1}", 80)
        state.endpoints[s] = [Endpoint(f"10.244.0.{i + 1}", 8080)]
    px = UserspaceProxier(Counting(), "192.168.0.2", listen_ip="127.0.0.1")
    try:
        px.sync(state, True)
        assert len(restores) == 1
        state.endpoints[spn[1]] = [Endpoint("10.244.9.9", 8080)]
        state.changed = {spn[1].service}
        px.sync(state, False)  # an endpoint change: the balancer alone
        assert len(restores) == 1
        assert px.lb.next_endpoint(px.proxies[spn[1]][1].key, "10.0.0.1") == "10.244.9.9:8080"
        del state.services[spn[2]]
        state.changed = {spn[2].service}
        px.sync(state, False)  # a service gone: its portal goes
        assert len(restores) == 2 and "172.30.0.3" not in restores[-1] and "172.30.0.2" in restores[-1]
    finally:
        px.cleanup()
