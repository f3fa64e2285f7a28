"""Stateful in-memory fakes of the kubelet's kernel seams (runtime, CNI, images) for unit tests."""

from __future__ import annotations

import asyncio
import signal as sig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netkube.kubelet.interfaces import CniFailure, ImageMissing, Proc, image_digest
from netkube.kubelet.runtime import RuntimeFailure


@dataclass
class FakeProcess:
    proc: Proc
    what: str
    argv: list[str]
    env: dict[str, str]
    netns: str | None = None
    target: Proc | None = None
    ignore_term: bool = False  # a process that traps SIGTERM, so only SIGKILL ends it
    exit: asyncio.Future[int | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    signals: list[int] = field(default_factory=list)


class FakeRuntime:
    """Refuses what the kernel refuses: a second netns of one name, joining a dead process."""

    def __init__(self, ignore_term: set[str] | None = None) -> None:
        self.netns: set[str] = set()
        self.procs: dict[Proc, FakeProcess] = {}
        self.ignore_term = ignore_term or set()  # container names that trap SIGTERM
        self.events: list[str] = []  # ordered log: "netns+ x", "pause+", "start c", "kill c 15", ...
        self.exec_results: dict[str, tuple[int | None, str]] = {}  # exec probe/hook answers (test control)
        self.execs: list[list[str]] = []
        self._next = 40000

    async def create_netns(self, name: str) -> str:
        if name in self.netns:
            raise RuntimeFailure(f'Cannot create namespace file "/run/netns/{name}": File exists')
        self.netns.add(name)
        self.events.append(f"netns+ {name}")
        return f"/run/netns/{name}"

    async def delete_netns(self, name: str) -> None:
        if name in self.netns:
            self.netns.discard(name)
            self.events.append(f"netns- {name}")

    def _new(self, what: str, argv: list[str], env: dict[str, str]) -> FakeProcess:
        self._next += 1
        p = FakeProcess(Proc(self._next, 1000 + self._next), what, argv, env)
        self.procs[p.proc] = p
        return p

    async def start_pause(self, netns_path: str | None, hostname: str | None, binds: list[tuple[str, str]],
                          log_path: Path, what: str) -> Proc:
        name = netns_path.rsplit("/", 1)[-1] if netns_path else None
        if name is not None and name not in self.netns:
            raise RuntimeFailure(f"nsexec: setns net {netns_path}: No such file or directory")
        p = self._new(what, ["pause"], {})
        p.netns = name
        self.events.append(f"pause+ {what}")
        return p.proc

    async def start_container(self, target: Proc, argv: list[str], env: dict[str, str], cwd: str | None,
                              log_path: Path, what: str, stdin: bool = False, tty: bool = False) -> Proc:
        p = self._new(what, argv, env)
        p.target = target
        p.ignore_term = what.rsplit("/", 1)[-1] in self.ignore_term
        self.events.append(f"start {what}")
        if not self.alive(target):
            p.exit.set_result(125)  # nsexec cannot open /proc/<pid>/ns/*: setup failure code
        return p.proc

    def signal(self, proc: Proc, signum: int) -> None:
        p = self.procs.get(proc)
        if p is None or p.exit.done():
            return
        p.signals.append(signum)
        self.events.append(f"kill {p.what} {signum}")
        if signum == sig.SIGKILL or (signum == sig.SIGTERM and not p.ignore_term):
            p.exit.set_result(128 + signum)

    async def wait(self, proc: Proc) -> int | None:
        p = self.procs.get(proc)
        if p is None:
            return None  # not ours (an adopted pid that is gone)
        return await asyncio.shield(p.exit)

    def alive(self, proc: Proc) -> bool:
        p = self.procs.get(proc)
        return p is not None and not p.exit.done()

    def forget(self, proc: Proc) -> None:
        pass

    def handles(self, proc: Proc, signum: int) -> bool:
        p = self.procs.get(proc)
        return p is None or not p.ignore_term  # a fake process "traps" SIGTERM unless told it ignores it

    async def exec_in(self, target: Proc, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
        """Answers from exec_results[argv joined by spaces] (code, output); unknown commands exit 0."""
        p = self.procs.get(target)
        if p is None or p.exit.done():
            return 125, "nsexec: no such process"
        self.execs.append(list(argv))
        code, out = self.exec_results.get(" ".join(argv), (0, ""))
        if code is None:
            await asyncio.sleep(timeout)
        return code, out

    def console(self, proc: Proc) -> None:
        return None  # fake processes have no stdin to attach to

    # --- test controls --------------------------------------------------------------------
    def running(self, what_suffix: str) -> list[FakeProcess]:
        return [p for p in self.procs.values() if p.what.endswith(what_suffix) and not p.exit.done()]

    def exit(self, what_suffix: str, code: int) -> None:
        for p in self.running(what_suffix):
            p.exit.set_result(code)


class FakeCni:
    """IPs from 10.244.1.0/24 in order; ADD twice for one container is refused, DEL is idempotent."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.attached: dict[str, str] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.runtime_configs: dict[str, dict[str, Any]] = {}
        self._next = 2

    async def add(self, conflist: Path, container_id: str, netns_path: str, args: dict[str, str],
                  runtime_config: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("ADD", container_id, dict(args)))
        self.runtime_configs[container_id] = dict(runtime_config or {})
        if self.fail:
            raise CniFailure(self.fail)
        if container_id in self.attached:
            raise CniFailure(f"container {container_id} already has an address")
        ip = f"10.244.1.{self._next}"
        self._next += 1
        self.attached[container_id] = ip
        return {"cniVersion": "1.0.0", "ips": [{"address": f"{ip}/24", "gateway": "10.244.1.1"}]}

    async def delete(self, conflist: Path, container_id: str, netns_path: str, args: dict[str, str],
                     runtime_config: dict[str, Any] | None = None) -> None:
        self.calls.append(("DEL", container_id, dict(args)))
        self.attached.pop(container_id, None)


@dataclass
class FakeImage:
    name: str
    argv: list[str]
    image_id: str = ""

    def command(self, container: dict[str, Any], pod: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        return list(container.get("command") or self.argv) + list(container.get("args") or []), {"PATH": "/img/bin"}


class FakeImages:
    def __init__(self, known: dict[str, list[str]]) -> None:
        self.known = dict(known)

    def resolve(self, image: str) -> FakeImage:
        if image not in self.known:
            raise ImageMissing(f"image {image!r} is not a built-in image (have: {', '.join(sorted(self.known))})")
        return FakeImage(image, self.known[image], image_digest(image))
