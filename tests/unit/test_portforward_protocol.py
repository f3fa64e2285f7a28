"""portforward.k8s.io on the kubelet: the upgrade handshake and the stream-pair rules, with a scripted SPDY peer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from netkube.kubelet.streaming.portforward import PortForwarder
from netkube.kubelet.streaming.server import KubeletServer, local_launcher
from netkube.streaming.rawconn import dial_upgrade
from netkube.streaming.spdy.frames import Data, RstStatus, RstStream, SynReply, SynStream
from netkube.streaming.spdy.session import Session
from tests.unit.test_kubelet_portforward import Pods
from tests.unit.test_spdy_session import Peer

UPGRADE = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]


def pair_headers(kind: str, rid: str = "0", port: str = "80") -> dict[str, list[str]]:
    return {"streamtype": [kind], "port": [port], "requestid": [rid]}


@pytest.fixture
async def echo_port():
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data.upper())
            await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_kubelet_handshake_then_a_forwarded_connection(echo_port):
    dialed: list[tuple[str, int]] = []

    def dialer(netns: str):  # type: ignore[no-untyped-def]
        async def dial(port: int):  # type: ignore[no-untyped-def]
            dialed.append((netns, port))
            return await asyncio.open_connection("127.0.0.1", echo_port)
        return dial

    server = KubeletServer(Pods(), "127.0.0.1", 0, local_launcher, pf_dialer=dialer)
    await server.start()
    host = f"127.0.0.1:{server.port}"
    try:
        async def ask(path: str, headers: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
            return await dial_upgrade(socket.socket(), host, path, [], headers)

        up = await ask("/portForward/default/nope", [*UPGRADE, ("X-Stream-Protocol-Version", "portforward.k8s.io")])
        assert (up.status, up.body) == (404, b"pod does not exist")
        up.writer.close()
        up = await ask("/portForward/default/pf-web", [("X-Stream-Protocol-Version", "portforward.k8s.io")])
        assert (up.status, up.body) == (400, b"unable to upgrade: missing upgrade headers in request")
        up.writer.close()
        up = await ask("/portForward/default/pf-web", [*UPGRADE, ("X-Stream-Protocol-Version", "v4.channel.k8s.io")])
        assert up.status == 403 and up.headers["X-Accepted-Stream-Protocol-Versions"] == "portforward.k8s.io"
        assert up.body.startswith(b"unable to upgrade: unable to negotiate protocol")
        up.writer.close()

        up = await ask("/portForward/default/pf-web/uid-pf-web",
                       [*UPGRADE, ("X-Stream-Protocol-Version", "v9.example"),
                        ("X-Stream-Protocol-Version", "portforward.k8s.io")])
        assert up.status == 101
        assert (up.headers["Upgrade"], up.headers["X-Stream-Protocol-Version"]) == ("SPDY/3.1", "portforward.k8s.io")
        peer = Peer(up.reader, up.writer)
        await peer.send(SynStream(1, pair_headers("error")))
        assert await peer.next() == SynReply(1, {})
        await peer.send(Data(1, b"", fin=True))  # kubectl half-closes the error stream at once
        await peer.send(SynStream(3, pair_headers("data")), Data(3, b"ping"))
        assert await peer.next() == SynReply(3, {})
        assert await peer.data(3, 4) == b"PING"
        await peer.send(Data(3, b"", fin=True))  # the local client is done: the pod sees EOF and closes
        assert await peer.next() == Data(3, b"", fin=True)
        assert await peer.next() == Data(1, b"", fin=True)  # no error: the error stream just ends
        assert dialed == [("/run/netns/fake-pf-web", 80)]
        up.writer.close()
    finally:
        await server.stop()


class Harness:
    def __init__(self, forwarder: PortForwarder, peer: Peer, task: asyncio.Task[None]) -> None:
        self.forwarder, self.peer, self.task = forwarder, peer, task


@pytest.fixture
async def pf(echo_port):
    made: list[Harness] = []

    async def make(timeout: float = 30) -> Harness:
        async def dial(port: int):  # type: ignore[no-untyped-def]
            return await asyncio.open_connection("127.0.0.1", echo_port)

        a, b = socket.socketpair()
        sr, sw = await asyncio.open_connection(sock=a)
        pr, pw = await asyncio.open_connection(sock=b)
        forwarder = PortForwarder("sandbox-1", "/run/netns/x", dial, creation_timeout=timeout)
        h = Harness(forwarder, Peer(pr, pw), asyncio.create_task(forwarder.serve(Session(sr, sw, forwarder.accept))))
        made.append(h)
        return h

    yield make
    for h in made:
        h.peer.writer.close()
        await asyncio.wait_for(h.task, 5)
        assert not h.forwarder.tasks  # every pair's task ended with the session


@pytest.mark.parametrize("headers,why", [
    ({"streamtype": ["data"]}, "no port"),
    ({"port": ["80"]}, "no stream type"),
    ({"port": ["http"], "streamtype": ["data"]}, "port not a number"),
    ({"port": ["0"], "streamtype": ["data"]}, "port 0"),
    ({"port": ["80"], "streamtype": ["resize"]}, "unknown type"),
])
async def test_invalid_streams_are_reset(pf, headers, why):
    h = await pf()
    await h.peer.send(SynStream(1, headers))
    assert await h.peer.next() == RstStream(1, RstStatus.CANCEL), why


async def test_concurrent_pairs_are_matched_by_request_id(pf):
    h = await pf()
    # two connections whose streams interleave: errors 1, 3 then data 5 (request 1), 7 (request 0)
    for sid, kind, rid in ((1, "error", "0"), (3, "error", "1"), (5, "data", "1"), (7, "data", "0")):
        await h.peer.send(SynStream(sid, pair_headers(kind, rid)))
        assert await h.peer.next() == SynReply(sid, {})
    await h.peer.send(Data(5, b"second"), Data(7, b"first"))
    got = {5: b"", 7: b""}
    while got != {5: b"SECOND", 7: b"FIRST"}:
        f = await h.peer.next()
        assert isinstance(f, Data) and f.stream_id in got, f
        got[f.stream_id] += f.data


async def test_duplicate_stream_type_and_missing_partner_are_reported(pf):
    h = await pf(timeout=0.3)
    await h.peer.send(SynStream(1, pair_headers("error", "4")))
    assert await h.peer.next() == SynReply(1, {})
    await h.peer.send(SynStream(3, pair_headers("error", "4")))
    assert await h.peer.next() == SynReply(3, {})
    assert await h.peer.next() == Data(1, b"error processing stream for request 4: error stream already assigned")
    # no data stream ever comes for request 4
    assert await h.peer.next() == Data(1, b"(request=4) timed out waiting for streams")
    assert "4" not in h.forwarder.pairs
