"""portforward.k8s.io over one SPDY session: stream pairs become TCP connections inside the pod.

For each local connection kubectl opens two streams with the same `port` and `requestid` headers:
`streamtype: error` (which it half-closes at once and reads to the end) and `streamtype: data`.
Once both are here we connect to localhost:port in the pod's network namespace and copy bytes both
ways; a failure is written as text on the error stream, which kubectl prints and then drops the
whole session, as with a real kubelet. Both streams are closed when the copy ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from netkube.lab.netns import setns
from netkube.streaming.spdy.session import Session, Stream, StreamReset

log = logging.getLogger(__name__)
PROTOCOL = "portforward.k8s.io"
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's default wait for a pair's second stream
LINGER = 1.0  # after one direction ends, how long the other may still finish (as containerd)

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Dialer = Callable[[int], Awaitable[Conn]]  # port -> connection to localhost:port in the pod


class ForwardError(Exception):
    """Connecting inside the pod failed; the text is what kubectl shows."""


def check_headers(stream: Stream) -> str | None:
    """Upstream's httpStreamReceived: a stream needs a valid port and stream type."""
    port = stream.header("port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f'unable to parse "{port}" as a port' if not port.isdigit() else f'port "{port}" must be > 0'
    kind = stream.header("streamtype")
    if not kind:
        return '"streamType" header is required'
    if kind not in ("error", "data"):
        return f'invalid stream type "{kind}"'
    return None


def request_id(stream: Stream) -> str:
    """The pair key; old clients without requestID get upstream's guess from the stream ids."""
    rid = stream.header("requestid")
    if rid:
        return rid
    return str(stream.id if stream.header("streamtype") == "error" else stream.id - 2)


@dataclass
class Pair:
    rid: str
    error: Stream | None = None
    data: Stream | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, stream: Stream) -> str | None:
        kind = stream.header("streamtype")
        if getattr(self, kind) is not None:
            return f"{kind} stream already assigned"
        setattr(self, kind, stream)
        if self.error is not None and self.data is not None:
            self.complete.set()
        return None


class PortForwarder:
    """Serves one session; pod names the target in error messages (upstream: the sandbox id)."""

    def __init__(self, pod: str, netns: str, dial: Dialer, creation_timeout: float = STREAM_CREATION_TIMEOUT,
                 linger: float = LINGER) -> None:
        self.pod = pod
        self.netns = netns
        self.dial = dial
        self.creation_timeout = creation_timeout
        self.linger = linger
        self.pairs: dict[str, Pair] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def accept(self, stream: Stream) -> str | None:
        """The session's accept callback: validate, then pair the stream up."""
        error = check_headers(stream)
        if error is not None:
            return error
        rid = request_id(stream)
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = Pair(rid)
            self._spawn(self._monitor(pair))
        problem = pair.add(stream)
        if problem is not None:
            self._spawn(_write_error(pair.error, f"error processing stream for request {rid}: {problem}"))
        elif pair.complete.is_set():
            self._spawn(self._forward(pair))
        return None

    async def serve(self, session: Session) -> None:
        try:
            await session.serve()
        finally:
            for t in list(self.tasks):
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _monitor(self, pair: Pair) -> None:
        try:
            await asyncio.wait_for(pair.complete.wait(), self.creation_timeout)
        except TimeoutError:
            await _write_error(pair.error, f"(request={pair.rid}) timed out waiting for streams")
        finally:
            self.pairs.pop(pair.rid, None)

    async def _forward(self, pair: Pair) -> None:
        assert pair.data is not None and pair.error is not None
        port = int(pair.data.header("port"))
        try:
            try:
                conn = await self.dial(port)
            except ForwardError as e:
                await _write_error(pair.error, f"error forwarding port {port} to pod {self.pod}, uid : "
                                   f'failed to execute portforward in network namespace "{self.netns}": {e}')
                return
            await self._copy(pair.data, conn)
        finally:
            for s in (pair.data, pair.error):
                with contextlib.suppress(StreamReset, ConnectionError, OSError):
                    await s.close()
                s.forget()  # as upstream's RemoveStreams: whatever kubectl still sends is dropped

    async def _copy(self, data: Stream, conn: Conn) -> None:
        reader, writer = conn

        async def to_pod() -> None:
            with contextlib.suppress(StreamReset, ConnectionError, OSError):
                while chunk := await data.read():
                    writer.write(chunk)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()  # kubectl's FIN becomes ours: the server still answers

        async def from_pod() -> None:
            with contextlib.suppress(StreamReset, ConnectionError, OSError):
                while chunk := await reader.read(32768):
                    await data.write(chunk)
                await data.close()

        tasks = {asyncio.create_task(to_pod()), asyncio.create_task(from_pod())}
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending, timeout=self.linger)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()


async def _write_error(stream: Stream | None, text: str) -> None:
    log.info("port-forward: %s", text)
    if stream is None:
        return
    with contextlib.suppress(StreamReset, ConnectionError, OSError):
        await stream.write(text.encode())


# --- connecting inside a pod ----------------------------------------------------------------
def socket_in(netns_path: str, family: int) -> socket.socket:
    """A TCP socket created in netns_path; it stays there whichever thread uses it later."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path, os.O_RDONLY)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            setns(own)
    finally:
        os.close(own)


def netns_dialer(netns_path: str, make_socket: Callable[[str, int], socket.socket] = socket_in) -> Dialer:
    """Connect to localhost:port in the pod: IPv4 first, then IPv6, as containerd does."""

    async def dial(port: int) -> Conn:
        loop = asyncio.get_running_loop()
        failures = []
        for family, addr, go_net in ((socket.AF_INET, "127.0.0.1", "tcp4"), (socket.AF_INET6, "::1", "tcp6")):
            try:
                sock = make_socket(netns_path, family)
            except OSError as e:
                failures.append(f"dial {go_net}: {_go_errno(e)}")
                continue
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (addr, port))
            except OSError as e:
                sock.close()
                host = f"[{addr}]" if ":" in addr else addr
                failures.append(f"dial {go_net} {host}:{port}: connect: {_go_errno(e)}")
                continue
            return await asyncio.open_connection(sock=sock)
        v4, v6 = failures
        raise ForwardError(f'failed to connect to localhost:{port} inside namespace "{netns_path}", '
                           f"IPv4: {v4} IPv6 {v6} ")

    return dial


def _go_errno(e: OSError) -> str:
    # asyncio's strerror is "Connect call failed (...)"; Go prints the errno's text, in lower case
    return (os.strerror(e.errno) if e.errno else str(e)).lower()
