"""Attach: stream a running container's output and, if it was started with stdin, feed its stdin."""

from __future__ import annotations

import asyncio

from aiohttp import web

from netkube.kubelet.streaming import channels as ch
from netkube.kubelet.streaming.execsession import Sender, StreamFlags, _read_frames
from netkube.kubelet.streaming.logs import LogOptions, read_log
from netkube.kubelet.streaming.targets import ContainerRef


async def run_attach(ws: web.WebSocketResponse, c: ContainerRef, flags: StreamFlags) -> None:
    out = Sender(ws)
    console = c.console

    def on_frame(channel: int, data: bytes) -> None:
        if console is None or not flags.stdin:
            return  # no stdin in the spec: input is dropped, as upstream does
        if channel == ch.STDIN and data:
            console.write(data)
        elif channel == ch.RESIZE and (size := ch.parse_resize(data)):
            console.resize(*size)

    async def copy_output() -> None:
        # Output is what the container writes to its log from now on (with a tty the kubelet copies
        # it there), so attach and `logs -f` see the same bytes.
        async for chunk in read_log(c.log_path, LogOptions(follow=True, tail_lines=0), c.alive):
            if flags.stdout or flags.tty:
                await out.send(ch.STDOUT, chunk)
        await out.send(ch.ERROR, ch.success())

    reader = asyncio.create_task(_read_frames(ws, on_frame))
    pump = asyncio.create_task(copy_output())
    try:
        await asyncio.wait({reader, pump}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        reader.cancel()
        pump.cancel()
        await asyncio.gather(reader, pump, return_exceptions=True)
