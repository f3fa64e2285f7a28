"""One exec over a channel WebSocket: spawn the command (pipes or a pty) and pump frames both ways."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import termios
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from netkube.kubelet.console import open_pty, read_fd, set_winsize
from netkube.kubelet.streaming import channels as ch


@dataclass
class StreamFlags:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, q: object) -> StreamFlags:
        def on(name: str) -> bool:
            return q.get(name, "").lower() in ("1", "true")  # type: ignore[attr-defined]

        tty = on("tty")
        # With a tty stderr is merged into stdout, as upstream forces stderr off.
        return cls(on("stdin"), on("stdout"), on("stderr") and not tty, tty)


class Sender:
    """Serialises writes to the WebSocket from the pump tasks."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self.lock:
            if not self.ws.closed:
                await self.ws.send_bytes(ch.frame(channel, data))


async def run_exec(ws: web.WebSocketResponse, argv: list[str], env: dict[str, str], cwd: str | None,
                   flags: StreamFlags, command: list[str]) -> None:
    out = Sender(ws)
    try:
        if flags.tty:
            code = await _exec_tty(ws, out, argv, env, cwd)
        else:
            code = await _exec_pipes(ws, out, argv, env, cwd, flags)
    except OSError as e:
        await out.send(ch.ERROR, ch.failure(f"failed to exec in container: {e.strerror or e}"))
        return
    await out.send(ch.ERROR, ch.exit_status(code, command))


def _code(rc: int | None) -> int:
    rc = 0 if rc is None else rc
    return 128 - rc if rc < 0 else rc  # killed by signal n: 128+n, as a shell reports it


async def _exec_pipes(ws: web.WebSocketResponse, out: Sender, argv: list[str], env: dict[str, str],
                      cwd: str | None, flags: StreamFlags) -> int:
    pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, start_new_session=True,
        stdin=pipe if flags.stdin else null, stdout=pipe if flags.stdout else null,
        stderr=pipe if flags.stderr else null)

    async def copy(stream: asyncio.StreamReader | None, channel: int) -> None:
        while stream is not None and (chunk := await stream.read(32768)):
            await out.send(channel, chunk)

    def on_frame(channel: int, data: bytes) -> None:
        if proc.stdin is None:
            return
        if channel == ch.STDIN and data:
            proc.stdin.write(data)
        elif channel == ch.CLOSE and data[:1] == bytes([ch.STDIN]):
            proc.stdin.close()

    reader = asyncio.create_task(_read_frames(ws, on_frame))
    reader.add_done_callback(lambda _t: _kill(proc))
    try:
        await asyncio.gather(copy(proc.stdout, ch.STDOUT), copy(proc.stderr, ch.STDERR))
        return _code(await proc.wait())
    finally:
        reader.cancel()
        if proc.returncode is None:  # the client went away: do not leave the command behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _kill(proc: asyncio.subprocess.Process) -> None:
    """The client hung up (the WebSocket closed): end the command, as the kubelet does."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _set_ctty() -> None:
    # Runs in the child after setsid: make the pty slave on fd 0 the controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _exec_tty(ws: web.WebSocketResponse, out: Sender, argv: list[str], env: dict[str, str],
                    cwd: str | None) -> int:
    master, slave_path = open_pty()
    loop = asyncio.get_running_loop()
    try:
        slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True, preexec_fn=_set_ctty)
        finally:
            os.close(slave)  # only the child holds it now, so its exit gives the master EIO

        def on_frame(channel: int, data: bytes) -> None:
            if channel == ch.STDIN and data:
                with contextlib.suppress(OSError):
                    os.write(master, data)
            elif channel == ch.RESIZE and (size := ch.parse_resize(data)):
                set_winsize(master, *size)
            elif channel == ch.CLOSE and data[:1] == bytes([ch.STDIN]):
                with contextlib.suppress(OSError):
                    os.write(master, b"\x04")

        reader = asyncio.create_task(_read_frames(ws, on_frame))
        reader.add_done_callback(lambda _t: _kill(proc))
        try:
            while chunk := await read_fd(loop, master):
                await out.send(ch.STDOUT, chunk)
            return _code(await proc.wait())
        finally:
            reader.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    finally:
        os.close(master)


async def _read_frames(ws: web.WebSocketResponse, on_frame) -> None:  # type: ignore[no-untyped-def]
    async for msg in ws:
        if msg.type == WSMsgType.BINARY and msg.data:
            on_frame(msg.data[0], msg.data[1:])
        elif msg.type == WSMsgType.TEXT and msg.data:
            # base64 framings are text; the channel protocols we offer are binary only.
            continue
