"""The server side of one SPDY/3.1 session over a byte stream (asyncio).

The peer (kubectl's spdystream, or the apiserver relaying it) opens streams with SYN_STREAM; the
`accept` callback sees each stream's headers and either takes it (we answer SYN_REPLY) or refuses
it (RST_STREAM CANCEL, as upstream's spdystream Reset does). Streams are read and written like
sockets: read() returns b"" at the peer's FIN or a reset, close() sends our FIN.

Flow control: windows (per stream and, new in 3.1, per session) are always tracked and our
WINDOW_UPDATEs are always sent, but sending only waits for window once the peer has shown it does
flow control (a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting). spdystream, the only SPDY client
kubectl has, neither sends WINDOW_UPDATE nor honours ours, so enforcing from the first byte would
stall every transfer after 64 KiB, as it would against a real kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from netkube.streaming.spdy.frames import (
    DEFAULT_WINDOW,
    Data,
    Frame,
    FrameDecoder,
    GoAway,
    GoAwayStatus,
    HeaderEncoder,
    Headers,
    HeadersFrame,
    Ping,
    ProtocolError,
    RstStatus,
    RstStream,
    Setting,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    encode,
)

log = logging.getLogger(__name__)
MAX_WINDOW = 0x7FFFFFFF
CHUNK = 32768  # largest DATA frame we send
MAX_BUFFERED = 1 << 20  # unread bytes per stream before the session stops reading the transport


class Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class StreamReset(ConnectionError):
    """The stream was reset (by either side) or its session ended."""


class Stream:
    """One bidirectional SPDY stream opened by the peer."""

    def __init__(self, session: Session, frame: SynStream) -> None:
        self.session = session
        self.id = frame.stream_id
        self.headers: Headers = frame.headers
        self.remote_closed = frame.fin or frame.unidirectional
        self.local_closed = False
        self.reset_status: int | None = None
        self.send_window = session.initial_send_window
        self.recv_window = DEFAULT_WINDOW
        self._unacked = 0  # bytes read by the application but not yet given back to the peer
        self._buf = bytearray()
        self._changed = asyncio.Event()  # data arrived, FIN, reset, or the buffer drained
        self.replied = asyncio.Event()

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or [""])[0]

    @property
    def done(self) -> bool:
        return self.reset_status is not None or (self.local_closed and self.remote_closed)

    async def read(self, n: int = 65536) -> bytes:
        """Up to n bytes; b"" once the peer has sent FIN (or the stream was reset)."""
        while not self._buf:
            if self.reset_status is not None or self.remote_closed:
                return b""
            self._changed.clear()
            await self._changed.wait()
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        self._changed.set()  # wake a session reader waiting for room
        await self.session._consumed(self, len(chunk))
        return chunk

    async def write(self, data: bytes) -> None:
        await self.replied.wait()
        view = memoryview(data)
        while view:
            if self.reset_status is not None:
                raise StreamReset(f"stream {self.id} reset ({self.reset_status})")
            if self.local_closed:
                raise StreamReset(f"stream {self.id}: write after close")
            size = await self.session._reserve(self, len(view))
            await self.session._send(Data(self.id, bytes(view[:size])))
            view = view[size:]

    async def close(self) -> None:
        """Half-close: send FIN; the peer may go on sending."""
        await self.replied.wait()
        if self.local_closed or self.reset_status is not None:
            return
        self.local_closed = True
        await self.session._send(Data(self.id, b"", fin=True))
        self.session._forget_if_done(self)

    async def reset(self, status: int = RstStatus.CANCEL) -> None:
        if self.reset_status is not None:
            return
        self._set_reset(status)
        await self.session._send(RstStream(self.id, status))

    def forget(self) -> None:
        """Stop tracking the stream (upstream's RemoveStreams): the peer's late frames are dropped."""
        self.session.streams.pop(self.id, None)
        self._changed.set()  # a session reader waiting for this buffer to drain must not wait on

    def _set_reset(self, status: int) -> None:
        self.reset_status = status
        self._changed.set()
        self.replied.set()  # writers waiting for the reply must see the reset
        self.session._forget_if_done(self)


class Session:
    """Serve one upgraded connection; serve() returns when the peer or the transport goes away."""

    def __init__(self, reader: Reader, writer: Writer, accept: Callable[[Stream], str | None]) -> None:
        self._reader = reader
        self._writer = writer
        self._accept = accept
        self._decoder = FrameDecoder()
        self._encoder = HeaderEncoder()
        self._write_lock = asyncio.Lock()
        self._window = asyncio.Condition()
        self.streams: dict[int, Stream] = {}
        self.last_id = 0  # highest stream id the peer opened
        self.initial_send_window = DEFAULT_WINDOW
        self.send_window = DEFAULT_WINDOW  # the session-wide window (SPDY/3.1)
        self.recv_window = DEFAULT_WINDOW
        self._unacked = 0
        self.flow_control = False  # the peer has shown it does flow control
        self.going_away = False
        self.closed = False

    # --- reading ------------------------------------------------------------------------------
    async def serve(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for frame in self._decoder.feed(data):
                    await self._handle(frame)
        except ProtocolError as e:
            log.info("SPDY protocol error from peer: %s", e)
            with contextlib.suppress(ConnectionError, OSError):
                await self._send(GoAway(self.last_id, GoAwayStatus.PROTOCOL_ERROR))
        except (ConnectionError, OSError) as e:
            log.debug("SPDY transport failed: %s", e)
        finally:
            await self._teardown()

    async def _handle(self, frame: Frame) -> None:
        match frame:
            case SynStream():
                await self._open(frame)
            case Data():
                await self._data(frame)
            case RstStream(sid, status):
                if (s := self.streams.get(sid)) is not None:
                    s._set_reset(status)
                    await self._notify_window()
            case HeadersFrame(sid, _, fin) if fin:
                if (s := self.streams.get(sid)) is not None:
                    self._remote_fin(s)
            case Settings(values):
                await self._settings(values)
            case Ping(pid) if pid % 2 == 1:  # peer-initiated (a client's ids are odd): echo it
                await self._send(Ping(pid))
            case GoAway():
                self.going_away = True  # no new streams; those open run to their end
            case WindowUpdate(sid, delta):
                await self._window_update(sid, delta)

    async def _open(self, f: SynStream) -> None:
        if self.going_away or self.closed:
            return
        if f.stream_id % 2 == 0 or f.stream_id <= self.last_id:
            # client streams are odd and increasing; an old id is a protocol error for that stream
            await self._send(RstStream(f.stream_id, RstStatus.PROTOCOL_ERROR))
            return
        self.last_id = f.stream_id
        stream = Stream(self, f)
        error = self._accept(stream)
        if error is not None:
            log.debug("refused stream %d: %s", f.stream_id, error)
            stream.reset_status = RstStatus.CANCEL
            stream.replied.set()
            await self._send(RstStream(f.stream_id, RstStatus.CANCEL))
            return
        self.streams[f.stream_id] = stream
        await self._send(SynReply(f.stream_id, {}))
        stream.replied.set()
        self._forget_if_done(stream)

    async def _data(self, f: Data) -> None:
        stream = self.streams.get(f.stream_id)
        if stream is None:
            if f.stream_id > self.last_id:  # a stream never opened; a closed one's late frames are dropped
                await self._send(RstStream(f.stream_id, RstStatus.INVALID_STREAM))
            return
        if stream.remote_closed:
            await stream.reset(RstStatus.STREAM_ALREADY_CLOSED)
            return
        size = len(f.data)
        self.recv_window -= size
        stream.recv_window -= size
        if self.flow_control and (stream.recv_window < 0 or self.recv_window < 0):
            await stream.reset(RstStatus.FLOW_CONTROL_ERROR)
            return
        if size:
            stream._buf += f.data
            stream._changed.set()
        if f.fin:
            self._remote_fin(stream)
        # Backpressure: stop reading the transport while this stream's reader is behind.
        while (len(stream._buf) > MAX_BUFFERED and stream.reset_status is None and not self.closed
               and self.streams.get(stream.id) is stream):
            stream._changed.clear()
            await stream._changed.wait()

    def _remote_fin(self, stream: Stream) -> None:
        stream.remote_closed = True
        stream._changed.set()
        self._forget_if_done(stream)

    async def _settings(self, values: dict[int, int]) -> None:
        size = values.get(Setting.INITIAL_WINDOW_SIZE)
        if size is None:
            return
        self.flow_control = True
        delta = size - self.initial_send_window
        self.initial_send_window = size
        for s in self.streams.values():  # the spec: open streams' windows move by the difference
            s.send_window += delta
        await self._notify_window()

    async def _window_update(self, sid: int, delta: int) -> None:
        self.flow_control = True
        if sid == 0:
            self.send_window += delta
            if self.send_window > MAX_WINDOW:
                raise ProtocolError("session window overflow")
        elif (s := self.streams.get(sid)) is not None:
            s.send_window += delta
            if s.send_window > MAX_WINDOW:
                await s.reset(RstStatus.FLOW_CONTROL_ERROR)
        await self._notify_window()

    # --- writing ------------------------------------------------------------------------------
    async def _send(self, frame: Frame) -> None:
        # Encode under the lock: the header zlib stream must see blocks in wire order.
        async with self._write_lock:
            if self.closed:
                raise StreamReset("session closed")
            self._writer.write(encode(frame, self._encoder))
            await self._writer.drain()

    async def _reserve(self, stream: Stream, want: int) -> int:
        """How many bytes stream may send now (waits for window when the peer does flow control)."""
        async with self._window:
            while True:
                if stream.reset_status is not None or self.closed:
                    raise StreamReset(f"stream {stream.id} reset")
                size = min(want, CHUNK)
                if self.flow_control:
                    size = min(size, stream.send_window, self.send_window)
                if size > 0:
                    break
                await self._window.wait()
            stream.send_window -= size
            self.send_window -= size
            return size

    async def _notify_window(self) -> None:
        async with self._window:
            self._window.notify_all()

    async def _consumed(self, stream: Stream, size: int) -> None:
        """Give read bytes back to the peer's windows, half a window at a time."""
        stream._unacked += size
        self._unacked += size
        with contextlib.suppress(ConnectionError, OSError):
            if stream._unacked >= DEFAULT_WINDOW // 2 and not stream.done and not stream.remote_closed:
                stream.recv_window += stream._unacked
                await self._send(WindowUpdate(stream.id, stream._unacked))
                stream._unacked = 0
            if self._unacked >= DEFAULT_WINDOW // 2 and not self.closed:
                self.recv_window += self._unacked
                await self._send(WindowUpdate(0, self._unacked))
                self._unacked = 0

    def _forget_if_done(self, stream: Stream) -> None:
        if stream.done:
            self.streams.pop(stream.id, None)

    # --- ending -------------------------------------------------------------------------------
    async def close(self) -> None:
        """Say GOAWAY and drop the transport; open streams end as reset."""
        if not self.closed:
            with contextlib.suppress(ConnectionError, OSError):
                await self._send(GoAway(self.last_id, GoAwayStatus.OK))
        await self._teardown()

    async def _teardown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for s in list(self.streams.values()):
            s._set_reset(RstStatus.CANCEL)
        self.streams.clear()
        await self._notify_window()
        with contextlib.suppress(Exception):
            self._writer.close()
