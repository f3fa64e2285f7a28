"""The per-service-port proxy sockets: TCP splice with connect retries, UDP with per-client sessions.

TCP is relayed with plain non-blocking sockets driven by the event loop's add_reader/add_writer
callbacks (no streams, no task per connection): a connection costs a handful of loop wakeups, and
bulk data moves in large recv_into()/send() chunks through one buffer shared by the loop."""

from __future__ import annotations

import asyncio
import errno
import logging
import select
import socket

from proxy_modes.userspace.loadbalancer import RoundRobin

log = logging.getLogger(__name__)
DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)  # upstream EndpointDialTimeouts: each retry on the next endpoint
COPY_BUFFER = 1 << 20  # one recv_into() per wakeup moves up to this much
BACKLOG = 4096  # upstream listens with the kernel's somaxconn; a short queue drops SYNs (1 s retransmits)
ACCEPT_BATCH = 64  # connections accepted per listener wakeup


def copy_buffer() -> memoryview:
    return memoryview(bytearray(COPY_BUFFER))


def _split(ep: str) -> tuple[str, int]:
    host, _, port = ep.rpartition(":")
    return host.strip("[]"), int(port)


def _writable_now(sock: socket.socket) -> bool:
    p = select.poll()
    p.register(sock, select.POLLOUT)
    return bool(p.poll(0))


def _nodelay(sock: socket.socket) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's net package, which upstream used


class _Splice:
    """Both directions of one proxied connection. Direction i reads socks[i] and writes socks[1 - i];
    while the writer is full, the unsent rest waits in `pending[i]` and socks[i] is not read."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: socket.socket, upstream: socket.socket,
                 buf: memoryview) -> None:
        self.loop, self.buf = loop, buf
        self.socks = (client, upstream)
        self.fds = (client.fileno(), upstream.fileno())
        self.pending: list[memoryview | None] = [None, None]
        self.eof = [False, False]
        self.closed = False
        for i in (0, 1):
            loop.add_reader(self.fds[i], self._readable, i)

    def _readable(self, i: int) -> None:
        try:
            n = self.socks[i].recv_into(self.buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if n == 0:  # FIN: pass it on (half-close), keep the other direction going until it ends too
            self.loop.remove_reader(self.fds[i])
            self.eof[i] = True
            try:
                self.socks[1 - i].shutdown(socket.SHUT_WR)
            except OSError:
                self.close()
                return
            if all(self.eof):
                self.close()
            return
        data = self.buf[:n]
        sent = self._send(i, data)
        if sent is None or sent == len(data):
            return
        # The writer is full: stop reading this direction until it drains. The shared buffer is
        # reused by the next read, so what is left waits in a private copy.
        self.loop.remove_reader(self.fds[i])
        self.loop.add_writer(self.fds[1 - i], self._writable, i)
        self.pending[i] = memoryview(bytes(data[sent:]))

    def _writable(self, i: int) -> None:
        data = self.pending[i]
        assert data is not None
        sent = self._send(i, data)
        if sent is None:
            return
        if sent < len(data):
            self.pending[i] = data[sent:]
            return
        self.pending[i] = None  # drained: read this direction again
        self.loop.remove_writer(self.fds[1 - i])
        self.loop.add_reader(self.fds[i], self._readable, i)

    def _send(self, i: int, data: memoryview) -> int | None:
        """Bytes the writer of direction i took (0 when full); None once a socket error closed both."""
        try:
            return self.socks[1 - i].send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self.close()
            return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd, sock in zip(self.fds, self.socks, strict=True):
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
            sock.close()


class TcpProxy:
    """Accepts on one socket and splices each connection to an endpoint picked by the balancer."""

    def __init__(self, key: str, lb: RoundRobin, sock: socket.socket, buf: memoryview | None = None) -> None:
        self.key, self.lb, self.sock = key, lb, sock
        self.buf = buf if buf is not None else copy_buffer()  # shared by the proxies of one event loop
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self.sock.listen(BACKLOG)
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self.loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                client, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: leave the rest queued in the kernel for a moment
                log.warning("userspace proxy %s: accept failed: %s", self.key, e)
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(0.1, self._resume_accept)
                return
            _nodelay(client)
            self._dial(client, addr[0], set(), 0)

    def _resume_accept(self) -> None:
        if self.loop is not None and self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _dial(self, client: socket.socket, client_ip: str, tried: set[str], attempt: int) -> None:
        """Non-blocking connect to the next endpoint; on failure or timeout the next one is tried."""
        assert self.loop is not None
        ep = self.lb.next_endpoint(self.key, client_ip, skip=tried or None) if attempt < len(DIAL_TIMEOUTS) else None
        if ep is None:
            client.close()
            return
        tried.add(ep)
        host, port = _split(ep)
        up = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        _nodelay(up)
        err = up.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self._dial_failed(client, client_ip, tried, attempt, up, None, ep, errno.errorcode.get(err, str(err)))
            return
        if err == errno.EINPROGRESS and _writable_now(up):  # a local endpoint often answers within connect()
            err = up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._dial_failed(client, client_ip, tried, attempt, up, None, ep, errno.errorcode.get(err, str(err)))
            else:
                _Splice(self.loop, client, up, self.buf)
            return
        timer = self.loop.call_later(DIAL_TIMEOUTS[attempt], self._dial_failed, client, client_ip, tried, attempt,
                                     up, None, ep, "timeout")
        self.loop.add_writer(up.fileno(), self._dialed, client, client_ip, tried, attempt, up, timer, ep)

    def _dialed(self, client: socket.socket, client_ip: str, tried: set[str], attempt: int, up: socket.socket,
                timer: asyncio.TimerHandle, ep: str) -> None:
        assert self.loop is not None
        err = up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._dial_failed(client, client_ip, tried, attempt, up, timer, ep, errno.errorcode.get(err, str(err)))
            return
        timer.cancel()
        self.loop.remove_writer(up.fileno())
        _Splice(self.loop, client, up, self.buf)

    def _dial_failed(self, client: socket.socket, client_ip: str, tried: set[str], attempt: int, up: socket.socket,
                     timer: asyncio.TimerHandle | None, ep: str, why: str) -> None:
        assert self.loop is not None
        if timer is not None:
            timer.cancel()
        if up.fileno() >= 0:
            self.loop.remove_writer(up.fileno())
            up.close()
        log.info("userspace proxy %s: dial %s failed (%s), trying the next endpoint", self.key, ep, why)
        self._dial(client, client_ip, tried, attempt + 1)

    def close(self) -> None:
        """Stop accepting (connections already spliced go on, as upstream's)."""
        if self.loop is not None and self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _Session(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy, client: tuple[str, int]) -> None:
        self.proxy, self.client = proxy, client
        self.transport: asyncio.DatagramTransport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.proxy.transport is not None:
            self.proxy.transport.sendto(data, self.client)  # the reply goes out from the service socket
        self.touch()

    def touch(self) -> None:
        if self.idle:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.proxy.idle_timeout, self.expire)

    def expire(self) -> None:
        self.proxy.sessions.pop(self.client, None)
        if self.transport:
            self.transport.close()


class UdpProxy(asyncio.DatagramProtocol):
    """One UDP socket per service port; a connected socket per client session, closed when idle."""

    def __init__(self, key: str, lb: RoundRobin, sock: socket.socket, idle_timeout: float = 0.25) -> None:
        self.key, self.lb, self.sock, self.idle_timeout = key, lb, sock, idle_timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[tuple[str, int], _Session] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=self.sock)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        s = self.sessions.get(addr)
        if s is not None and s.transport is not None:
            s.transport.sendto(data)
            s.touch()
            return
        asyncio.ensure_future(self._open(data, addr))

    async def _open(self, data: bytes, addr: tuple[str, int]) -> None:
        ep = self.lb.next_endpoint(self.key, addr[0])
        if ep is None:
            return
        s = _Session(self, addr)
        self.sessions[addr] = s
        loop = asyncio.get_running_loop()
        s.transport, _ = await loop.create_datagram_endpoint(lambda: s, remote_addr=_split(ep))
        s.transport.sendto(data)
        s.touch()

    def close(self) -> None:
        for s in list(self.sessions.values()):
            s.expire()
        if self.transport is not None:
            self.transport.close()
        else:
            self.sock.close()
