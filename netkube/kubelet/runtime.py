"""The process runtime: named netns via iproute2, pause and containers via nsexec, exit via pidfd."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from cni import procrun
from netkube.kubelet import nsexec
from netkube.kubelet.console import Console, open_pty
from netkube.kubelet.interfaces import Proc
from netkube.lab.records import Records, process_start_time

log = logging.getLogger(__name__)

NSEXEC = os.path.abspath(nsexec.__file__)
# Imported rather than run as a script: a script is compiled on every start, an imported module
# comes from its cached bytecode (a couple of ms per pause and container start). Appended to
# sys.path, so the kubelet's own modules never shadow the stdlib there.
NSEXEC_ARGS = ["-I", "-S", "-c", f"import sys;sys.path.append({os.path.dirname(NSEXEC)!r});"
               "import nsexec;sys.exit(nsexec.main())"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


async def _read_once(fd: int) -> bytes:
    """Read what the pause helper reports on its ready pipe (b"" at EOF means it died)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(os.read(fd, 16))

    loop.add_reader(fd, ready)
    try:
        return await fut
    finally:
        loop.remove_reader(fd)


def _cgroup_args(files: Sequence[str]) -> list[str]:
    return [arg for f in files for arg in ("--cgroup", f)]


class RuntimeFailure(Exception):
    """Starting a pod process or namespace failed; the message says which and why."""


class ProcessRuntime:
    """Real Runtime. Records every netns and process before/as it is made and forgets it when reaped."""

    def __init__(self, records: Records, python: str = sys.executable) -> None:
        self.records = records
        self.python = python
        self.sleep = shutil.which("sleep") or "/bin/sleep"
        self.ip = shutil.which("ip") or "/usr/sbin/ip"
        self._exits: dict[Proc, asyncio.Future[int | None]] = {}
        self._consoles: dict[Proc, Console] = {}
        self._closing: set[asyncio.Task[None]] = set()  # console closes in flight (keep a reference)
        self._cgroups: dict[Proc, list[str]] = {}  # container -> its cgroup.procs files (exec joins them)

    # --- network namespaces ---------------------------------------------------------------
    async def _ip(self, *args: str) -> None:
        # procrun: posix_spawn + pidfd, no watcher thread per child (this runs for every pod)
        returncode, _, err = await procrun.run([self.ip, *args], dict(os.environ))
        if returncode != 0:
            raise RuntimeFailure(f"ip {' '.join(args)} failed: {err.decode().strip()}")

    async def create_netns(self, name: str) -> str:
        self.records.add_netns(name)  # before: a crash in between still leaves it findable
        path = f"/run/netns/{name}"
        if not os.path.exists(path):
            await self._ip("netns", "add", name)
            # What containerd's loopback plugin call does: lo up whatever the network plugins do.
            await self._ip("-n", name, "link", "set", "lo", "up")
        return path

    async def delete_netns(self, name: str) -> None:
        if os.path.exists(f"/run/netns/{name}"):
            await self._ip("netns", "delete", name)
        self.records.forget("netns", name=name)

    # --- processes ------------------------------------------------------------------------
    def _spawn(self, argv: list[str], env: dict[str, str], log_path: Path, ready_w: int | None,
               stdio: list[tuple[int, ...] | tuple[int, int, str, int, int]] | None = None) -> int:
        # posix_spawn (vfork underneath) keeps the per-pod cost low; setsid so a ^C to the agent's
        # process group does not kill pods, as with containerd-shim.
        log_path.parent.mkdir(parents=True, exist_ok=True)
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = stdio or [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        if ready_w is not None:
            actions.append((os.POSIX_SPAWN_DUP2, ready_w, 3))
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)

    async def _started(self, pid: int, what: str) -> Proc:
        start = process_start_time(pid)
        if start is None:  # already exited and reaped by nobody yet: still a zombie, so unlikely
            start = 0
        self.records.add("process", pid=pid, start=start, what=what)
        proc = Proc(pid, start)
        self._watch(proc)
        return proc

    async def start_pause(
        self, netns_path: str | None, hostname: str | None, binds: list[tuple[str, str]], log_path: Path, what: str
    ) -> Proc:
        argv = [self.python, *NSEXEC_ARGS, "--ready-fd", "3"]
        if netns_path:
            argv += ["--netns", netns_path]
        if hostname:
            argv += ["--new-uts", "--hostname", hostname]
        argv += ["--new-mount"]
        for src, dst in binds:
            argv += ["--bind", f"{src}:{dst}"]
        argv += ["--", self.sleep, "infinity"]
        r, w = os.pipe()
        try:
            pid = self._spawn(argv, {"PATH": DEFAULT_PATH}, log_path, w)
        finally:
            os.close(w)
        proc = await self._started(pid, what)
        try:
            ok = await _read_once(r)
        except BaseException:
            self.signal(proc, signal.SIGKILL)  # cancelled mid-start: the pidfd watcher reaps it
            raise
        finally:
            os.close(r)
        if ok != b"ok":
            self.signal(proc, signal.SIGKILL)
            await self.wait(proc)
            tail = log_path.read_text(errors="replace")[-400:].strip() if log_path.exists() else ""
            raise RuntimeFailure(f"pod sandbox process failed to start: {tail or 'no output'}")
        return proc

    async def start_container(
        self, target: Proc, argv: list[str], env: dict[str, str], cwd: str | None, log_path: Path, what: str,
        stdin: bool = False, tty: bool = False, cgroup: Sequence[str] = (),
    ) -> Proc:
        """cgroup: the cgroup.procs files of the container's cgroups (cgroups.PodCgroups). nsexec
        writes itself into them before it execs argv, so no instruction of the container runs
        outside its limits (writing the pid from here after spawn would leave a window)."""
        full = [self.python, *NSEXEC_ARGS, *_cgroup_args(cgroup), "--target", str(target.pid), "--private-tmp",
                "--ready-fd", "3"]
        if cwd:
            full += ["--cwd", cwd]
        full += ["--", *argv]
        env = {"PATH": DEFAULT_PATH, **env}
        console: Console | None = None
        r, w = os.pipe()
        try:
            try:
                if stdin or tty:
                    console, actions, child_fd = self._console_stdio(log_path, stdin, tty)
                    try:
                        pid = self._spawn(full, env, log_path, w, actions)
                    except BaseException:
                        os.close(console.fd)
                        raise
                    finally:
                        if child_fd is not None:
                            os.close(child_fd)
                else:
                    pid = self._spawn(full, env, log_path, w)
            finally:
                os.close(w)  # ours closed: EOF comes when the child closes its end or exits
            proc = await self._started(pid, what)
            if cgroup:
                self._cgroups[proc] = list(cgroup)
            if console is not None:
                self._consoles[proc] = console
                console.start()
            await self._setup_done(proc, r)
            return proc
        finally:
            os.close(r)

    async def _setup_done(self, proc: Proc, ready_r: int) -> None:
        """Wait until nsexec has joined the pod's namespaces and cgroups (it writes "ok" just before
        exec), as runc's start returns only then: an exec or a status read right after must not find
        the process still in the node's namespaces. A failed setup (EOF, no "ok") is left to the
        exit watcher, which reports the container's exit as for any other."""
        try:
            await _read_once(ready_r)
        except BaseException:
            self.signal(proc, signal.SIGKILL)  # cancelled mid-start: the pidfd watcher reaps it
            raise

    def _console_stdio(self, log_path: Path, stdin: bool, tty: bool) -> tuple[Console, list, int | None]:  # type: ignore[type-arg]
        """stdin: true keeps a pipe (or, with tty: true, a pty) the kubelet can write for attach."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if tty:
            master, slave_path = open_pty()
            # Opened by the child after setsid, without O_NOCTTY: it becomes the controlling terminal.
            actions = [(os.POSIX_SPAWN_OPEN, 0, slave_path, os.O_RDWR, 0),
                       (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2),
                       (os.POSIX_SPAWN_CLOSE, master)]
            return Console(master, True, log_path), actions, None
        r, w = os.pipe2(os.O_CLOEXEC)
        actions = [(os.POSIX_SPAWN_DUP2, r, 0),
                   (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        return Console(w, False, log_path), actions, r

    def console(self, proc: Proc) -> Console | None:
        """The stdin/tty the kubelet holds for a container started with stdin: true (attach uses it)."""
        return self._consoles.get(proc)

    def signal(self, proc: Proc, sig: int) -> None:
        if process_start_time(proc.pid) == proc.start:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                # A container's processes die with it (runc kills the whole cgroup). Ours share the
                # session/process group setsid gave the container process, so kill that group too.
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def handles(self, proc: Proc, sig: int) -> bool:
        """Whether the process catches sig (SigCgt in /proc/<pid>/status). A container's PID 1 that
        does not is immune to it (the kernel drops default-action signals to a pid-namespace init)."""
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
        except (OSError, ValueError):
            pass
        return True

    async def exec_in(self, target: Proc, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
        """Run argv in the target's namespaces (exec probes and hooks); (None, output) on timeout."""
        # Like runc exec: exec probes and hooks run inside the container's cgroups too.
        full = [self.python, *NSEXEC_ARGS, *_cgroup_args(self._cgroups.get(target, ())), "--target", str(target.pid),
                "--", *argv]
        proc = await asyncio.create_subprocess_exec(
            *full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env={"PATH": DEFAULT_PATH, **env}, start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException as e:  # timeout or cancelled: end the command and anything it started
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.shield(proc.wait())
            if isinstance(e, TimeoutError):
                return None, ""
            raise
        return proc.returncode, out.decode("utf-8", "replace")

    def alive(self, proc: Proc) -> bool:
        fut = self._exits.get(proc)
        if fut is not None and fut.done():
            return False
        return proc.start != 0 and process_start_time(proc.pid) == proc.start

    def _watch(self, proc: Proc) -> asyncio.Future[int | None]:
        fut = self._exits.get(proc)
        if fut is not None:
            return fut
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._exits[proc] = fut
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            self._reap(proc, fut)
            return fut
        if process_start_time(proc.pid) not in (proc.start, None):
            os.close(fd)  # pid was reused: ours is long gone
            self._reap(proc, fut)
            return fut

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._reap(proc, fut)

        loop.add_reader(fd, ready)  # a pidfd polls readable once the process exits
        return fut

    def _reap(self, proc: Proc, fut: asyncio.Future[int | None]) -> None:
        code: int | None = None
        try:
            got, status = os.waitpid(proc.pid, os.WNOHANG)
            if got == proc.pid:
                code = os.waitstatus_to_exitcode(status)
                if code < 0:
                    code = 128 - code  # killed by signal n: report 128+n like a shell / containerd
        except ChildProcessError:
            code = None  # adopted from a previous kubelet: not our child, exit code unknown
        self.records.forget("process", pid=proc.pid, start=proc.start)
        if not fut.done():
            fut.set_result(code)

    async def wait(self, proc: Proc) -> int | None:
        return await asyncio.shield(self._watch(proc))

    def forget(self, proc: Proc) -> None:
        """Drop the exit future of a process that is fully handled (keeps the map small)."""
        fut = self._exits.get(proc)
        if fut is not None and fut.done():
            del self._exits[proc]
        self._cgroups.pop(proc, None)
        console = self._consoles.pop(proc, None)
        if console is not None:
            task = asyncio.get_running_loop().create_task(console.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
