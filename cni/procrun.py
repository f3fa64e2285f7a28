"""Run a short-lived helper (a CNI plugin, `ip netns add`) from asyncio without a thread per child.

asyncio's subprocess support waits for each child in a new thread (ThreadedChildWatcher) and builds
transports and protocols for its pipes; for the few-millisecond commands the kubelet runs per pod
that bookkeeping is a large share of the cost. Here: posix_spawn (vfork underneath), the pipes read
and written from the event loop, the exit taken from a pidfd. Other children are never reaped.
"""

from __future__ import annotations

import asyncio
import os


async def run(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """(exit code as asyncio reports it: -n for signal n, stdout, stderr)."""
    loop = asyncio.get_running_loop()
    in_r, in_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    for fd in (in_r, out_w, err_w):
        os.set_blocking(fd, True)  # the child's ends are ordinary blocking stdio
    ours = [in_w, out_r, err_r]
    try:
        try:
            pid = os.posix_spawn(argv[0], argv, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        try:
            pidfd = os.pidfd_open(pid)
        except BaseException:
            os.waitpid(pid, 0)
            raise
        ours = []  # from here on _pump closes them, however it ends
        finished = False
        try:
            out, err = await _pump(loop, in_w, stdin, out_r, err_r)
            await _readable(loop, pidfd)
            finished = True
        finally:
            os.close(pidfd)
            if not finished:  # cancelled mid-way: the child must not linger; reap it now
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out, err
    finally:
        for fd in ours:
            os.close(fd)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    fut = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def _pump(loop: asyncio.AbstractEventLoop, in_w: int, data: bytes, out_r: int, err_r: int) -> tuple[bytes, bytes]:
    """Write data to in_w, read out_r and err_r to EOF; closes all three."""
    bufs: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = {in_w, out_r, err_r}
    done = loop.create_future()
    view = memoryview(data)

    def finish(fd: int, reader: bool) -> None:
        (loop.remove_reader if reader else loop.remove_writer)(fd)
        os.close(fd)
        open_fds.discard(fd)
        if not open_fds and not done.done():
            done.set_result(None)

    def can_write() -> None:
        nonlocal view
        try:
            n = os.write(in_w, view)
        except BlockingIOError:
            return
        except BrokenPipeError:
            n = len(view)  # the child does not read its stdin: fine, as communicate()
        view = view[n:]
        if not view:
            finish(in_w, False)

    def can_read(fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            bufs[fd].append(chunk)
        else:
            finish(fd, True)

    try:
        if view:
            loop.add_writer(in_w, can_write)
        else:
            finish(in_w, False)
        loop.add_reader(out_r, can_read, out_r)
        loop.add_reader(err_r, can_read, err_r)
        await done
    finally:
        for fd in list(open_fds):
            (loop.remove_writer if fd == in_w else loop.remove_reader)(fd)
            os.close(fd)
        open_fds.clear()
    return b"".join(bufs[out_r]), b"".join(bufs[err_r])
