"""A container's stdin (a pipe, or a pty with tty: true) held by the kubelet so attach can reach it."""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import termios
from pathlib import Path


class Console:
    """Owns the kubelet's end: the pipe's write end, or the pty master whose output it copies to the log."""

    def __init__(self, stdin_fd: int, tty: bool, log_path: Path) -> None:
        self.fd = stdin_fd  # pty master (tty) or the write end of the stdin pipe
        self.tty = tty
        self.log_path = log_path
        self._pump: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        """With a tty nobody else reads the master: copy its output into the container log."""
        if self.tty:
            self._pump = asyncio.get_running_loop().create_task(self._copy_output())

    async def _copy_output(self) -> None:
        loop = asyncio.get_running_loop()
        with self.log_path.open("ab", buffering=0) as log:
            while True:
                chunk = await read_fd(loop, self.fd)
                if not chunk:
                    return  # EIO: every slave fd closed, the container is gone
                log.write(chunk)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            os.write(self.fd, data)
        except OSError:
            pass  # the reader is gone; attach keeps streaming output

    def close_stdin(self) -> None:
        if self.tty:
            self.write(b"\x04")  # a terminal has no half-close: EOF is ^D in canonical mode
        elif not self.closed:
            self.closed = True
            os.close(self.fd)

    def resize(self, cols: int, rows: int) -> None:
        if self.tty:
            set_winsize(self.fd, cols, rows)

    async def close(self) -> None:
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)
        if not self.closed:
            self.closed = True
            os.close(self.fd)


async def read_fd(loop: asyncio.AbstractEventLoop, fd: int, size: int = 32768) -> bytes:
    """One read from a non-blocking fd; b"" at EOF or EIO (a pty master whose slave closed)."""
    fut: asyncio.Future[bytes] = loop.create_future()

    def ready() -> None:
        if fut.done():
            return
        try:
            fut.set_result(os.read(fd, size))
        except BlockingIOError:
            return
        except OSError:
            fut.set_result(b"")

    loop.add_reader(fd, ready)
    try:
        return await fut
    finally:
        loop.remove_reader(fd)


def set_winsize(fd: int, cols: int, rows: int) -> None:
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError:
        pass


def open_pty() -> tuple[int, str]:
    """A new pty: (non-blocking master fd, slave path) — the child opens the path to get a ctty."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    os.set_blocking(master, False)
    return master, path
