"""The SPDY/3.1 server session against a scripted peer over a socket pair (streams, pings, flow control)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from netkube.streaming.spdy.frames import (
    DEFAULT_WINDOW,
    Data,
    Frame,
    FrameDecoder,
    GoAway,
    HeaderEncoder,
    Ping,
    RstStatus,
    RstStream,
    Setting,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    encode,
)
from netkube.streaming.spdy.session import CHUNK, Session, Stream, StreamReset


class Peer:
    """The client end: sends frames we script, collects what the session sends back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.enc, self.dec = HeaderEncoder(), FrameDecoder()
        self.pending: list[Frame] = []

    async def send(self, *frames: Frame) -> None:
        for f in frames:
            self.writer.write(encode(f, self.enc))
        await self.writer.drain()

    async def next(self, timeout: float = 5) -> Frame:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("session closed the connection")
            self.pending += self.dec.feed(data)
        return self.pending.pop(0)

    async def quiet(self, wait: float = 0.2) -> bool:
        """True when nothing arrives for `wait` seconds."""
        try:
            self.pending.append(await self.next(wait))
        except TimeoutError:
            return True
        return False

    async def data(self, sid: int, size: int) -> bytes:
        got = b""
        while len(got) < size:
            f = await self.next()
            if isinstance(f, Data) and f.stream_id == sid:
                got += f.data
        return got


class Harness:
    def __init__(self, session: Session, peer: Peer, accepted: list[Stream]) -> None:
        self.session, self.peer, self.accepted = session, peer, accepted

    async def open(self, sid: int, headers: dict | None = None, fin: bool = False) -> Stream:
        await self.peer.send(SynStream(sid, headers or {"port": ["80"]}, fin=fin))
        assert await self.peer.next() == SynReply(sid, {})
        return self.accepted[-1]


@pytest.fixture
async def spdy() -> AsyncIterator[Callable[..., Harness]]:
    made: list[tuple[Session, asyncio.Task[None], asyncio.StreamWriter]] = []

    async def make(refuse: Callable[[Stream], str | None] = lambda s: None) -> Harness:
        a, b = socket.socketpair()
        sr, sw = await asyncio.open_connection(sock=a)
        pr, pw = await asyncio.open_connection(sock=b)
        accepted: list[Stream] = []

        def accept(stream: Stream) -> str | None:
            error = refuse(stream)
            if error is None:
                accepted.append(stream)
            return error

        session = Session(sr, sw, accept)
        made.append((session, asyncio.create_task(session.serve()), pw))
        return Harness(session, Peer(pr, pw), accepted)

    yield make  # type: ignore[misc]
    for session, task, pw in made:
        pw.close()
        await session.close()
        await asyncio.wait_for(task, 5)


async def test_streams_are_replied_read_and_written(spdy):
    h = await spdy()
    s = await h.open(1, {"streamtype": ["data"], "port": ["8080"], "requestid": ["7"]})
    assert (s.header("StreamType"), s.header("port"), s.header("requestid")) == ("data", "8080", "7")
    await h.peer.send(Data(1, b"GET / HTTP/1.0\r\n\r\n"), Data(1, b"", fin=True))
    assert await s.read() == b"GET / HTTP/1.0\r\n\r\n"
    assert await s.read() == b""  # the peer's FIN
    await s.write(b"x" * (CHUNK + 10))
    assert await h.peer.next() == Data(1, b"x" * CHUNK)  # one DATA frame never exceeds CHUNK
    assert await h.peer.next() == Data(1, b"x" * 10)
    await s.close()
    assert await h.peer.next() == Data(1, b"", fin=True)
    assert 1 not in h.session.streams  # closed both ways: forgotten


async def test_refused_bad_and_reused_stream_ids_are_reset(spdy):
    h = await spdy(refuse=lambda s: None if s.header("port") else "port header is required")
    await h.peer.send(SynStream(1, {"streamtype": ["data"]}))
    assert await h.peer.next() == RstStream(1, RstStatus.CANCEL)  # as upstream's stream.Reset()
    await h.peer.send(SynStream(2, {"port": ["1"]}))  # even ids belong to the server
    assert await h.peer.next() == RstStream(2, RstStatus.PROTOCOL_ERROR)
    await h.open(5)
    await h.peer.send(SynStream(3, {"port": ["1"]}))  # not above the last id
    assert await h.peer.next() == RstStream(3, RstStatus.PROTOCOL_ERROR)
    await h.peer.send(Data(9, b"?"))  # never opened
    assert await h.peer.next() == RstStream(9, RstStatus.INVALID_STREAM)


async def test_pings_from_the_peer_are_echoed(spdy):
    h = await spdy()
    await h.peer.send(Ping(1), Ping(2), Ping(3))
    assert await h.peer.next() == Ping(1)
    assert await h.peer.next() == Ping(3)  # 2 would answer a ping of ours: not echoed
    assert await h.peer.quiet()


async def test_peer_reset_ends_reads_and_writes(spdy):
    h = await spdy()
    s = await h.open(1)
    reader = asyncio.create_task(s.read())
    await h.peer.send(RstStream(1, RstStatus.CANCEL))
    assert await asyncio.wait_for(reader, 5) == b""
    with pytest.raises(StreamReset):
        await s.write(b"late")
    assert s.reset_status == RstStatus.CANCEL and 1 not in h.session.streams


async def test_without_peer_flow_control_large_writes_do_not_wait(spdy):
    # spdystream (kubectl) never sends WINDOW_UPDATE: enforcing the 64 KiB window would stall here
    h = await spdy()
    s = await h.open(1)
    size = 4 * DEFAULT_WINDOW
    await asyncio.wait_for(s.write(b"y" * size), 5)
    assert await h.peer.data(1, size) == b"y" * size


async def test_stream_window_is_honoured_once_the_peer_uses_flow_control(spdy):
    h = await spdy()
    await h.peer.send(Settings({Setting.INITIAL_WINDOW_SIZE: 1000}))
    s = await h.open(1)
    writer = asyncio.create_task(s.write(b"z" * 2500))
    assert await h.peer.data(1, 1000) == b"z" * 1000
    assert await h.peer.quiet() and not writer.done()  # window used up: the writer waits
    await h.peer.send(WindowUpdate(1, 1000))
    assert await h.peer.data(1, 1000) == b"z" * 1000
    assert await h.peer.quiet() and not writer.done()
    await h.peer.send(WindowUpdate(1, 5000))
    assert await h.peer.data(1, 500) == b"z" * 500
    await asyncio.wait_for(writer, 5)


async def test_session_window_limits_all_streams_together(spdy):
    h = await spdy()
    a, b = await h.open(1), await h.open(3)
    await h.peer.send(WindowUpdate(1, 10 * DEFAULT_WINDOW), WindowUpdate(3, 10 * DEFAULT_WINDOW))
    await asyncio.sleep(0.05)
    w1 = asyncio.create_task(a.write(b"a" * DEFAULT_WINDOW))
    await asyncio.wait_for(w1, 5)  # exactly the session's 64 KiB
    w2 = asyncio.create_task(b.write(b"b" * 100))
    assert await h.peer.data(1, DEFAULT_WINDOW) == b"a" * DEFAULT_WINDOW
    assert await h.peer.quiet() and not w2.done()  # the session window, not b's, is empty
    await h.peer.send(WindowUpdate(0, 100))
    assert await h.peer.data(3, 100) == b"b" * 100
    await asyncio.wait_for(w2, 5)


async def test_reading_returns_window_to_the_peer(spdy):
    h = await spdy()
    s = await h.open(1)
    half = DEFAULT_WINDOW // 2
    await h.peer.send(Data(1, b"d" * half))
    assert await h.peer.quiet()  # nothing read yet: no update
    got = b""
    while len(got) < half:
        got += await s.read()
    updates = {await h.peer.next(), await h.peer.next()}
    assert updates == {WindowUpdate(1, half), WindowUpdate(0, half)}


async def test_overrunning_an_advertised_window_resets_the_stream(spdy):
    h = await spdy()
    await h.peer.send(WindowUpdate(0, 1))  # the peer shows it does flow control
    await h.open(1)
    await h.peer.send(Data(1, b"o" * (DEFAULT_WINDOW + 1)))
    assert await h.peer.next() == RstStream(1, RstStatus.FLOW_CONTROL_ERROR)


async def test_goaway_stops_new_streams_and_garbage_ends_the_session(spdy):
    h = await spdy()
    await h.peer.send(GoAway(0))
    await h.peer.send(SynStream(1, {"port": ["1"]}))
    assert await h.peer.quiet() and h.accepted == []
    h2 = await spdy()
    h2.peer.writer.write(bytes.fromhex("8002000100000000"))  # SPDY/2
    await h2.peer.writer.drain()
    assert await h2.peer.next() == GoAway(0, 1)  # PROTOCOL_ERROR
    with pytest.raises(EOFError):
        await h2.peer.next()
    assert h2.session.closed


async def test_forgotten_streams_drop_late_data_quietly(spdy):
    h = await spdy()
    s = await h.open(1)
    s.forget()
    await h.peer.send(Data(1, b"late"), Data(1, b"", fin=True))
    assert await h.peer.quiet()  # no RST_STREAM back, as spdystream after RemoveStreams
    assert s._buf == bytearray() and 1 not in h.session.streams


async def test_a_slow_reader_holds_the_session_until_it_catches_up(spdy, monkeypatch):
    monkeypatch.setattr("netkube.streaming.spdy.session.MAX_BUFFERED", 1000)
    h = await spdy()
    s = await h.open(1)
    await h.peer.send(Data(1, b"a" * 1500), Ping(1))
    assert await h.peer.quiet()  # buffer over the limit: the ping behind the data is not read yet
    assert await s.read(1000) == b"a" * 1000
    assert await h.peer.next() == Ping(1)
