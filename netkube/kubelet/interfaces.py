"""The seams the kubelet uses (CNI, images, host runtime) as Protocols, plus adapters to netkube's own code."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class CniFailure(Exception):
    """CNI ADD/DEL failed; the message is the plugin's error."""


class ImageMissing(Exception):
    """The image is not one of the built-in images; the message lists what exists."""


class Cni(Protocol):
    # runtime_config: the CNI capability args, e.g. {"portMappings": [...]} from containers[].ports[].hostPort
    async def add(self, conflist: Path, container_id: str, netns_path: str, args: dict[str, str],
                  runtime_config: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def delete(self, conflist: Path, container_id: str, netns_path: str, args: dict[str, str],
                     runtime_config: dict[str, Any] | None = None) -> None: ...


class Image(Protocol):
    image_id: str

    def command(self, container: dict[str, Any], pod: dict[str, Any]) -> tuple[list[str], dict[str, str]]: ...


class ImageStore(Protocol):
    def resolve(self, image: str) -> Image: ...


@dataclass(frozen=True)
class Proc:
    """A process the runtime started: pid + /proc start time identify it across pid reuse."""

    pid: int
    start: int


class Runtime(Protocol):
    """Host operations: network namespaces and processes (spawn, signal, wait)."""

    async def create_netns(self, name: str) -> str: ...  # returns the path, e.g. /run/netns/<name>

    async def delete_netns(self, name: str) -> None: ...

    async def start_pause(
        self, netns_path: str | None, hostname: str | None, binds: list[tuple[str, str]], log_path: Path, what: str
    ) -> Proc: ...

    async def start_container(
        self, target: Proc, argv: list[str], env: dict[str, str], cwd: str | None, log_path: Path, what: str,
        stdin: bool = False, tty: bool = False,
    ) -> Proc: ...

    def console(self, proc: Proc) -> Any: ...  # the held stdin/pty (console.Console) or None

    def signal(self, proc: Proc, sig: int) -> None: ...

    async def wait(self, proc: Proc) -> int | None: ...  # exit code (128+n for signal n), None if unknown

    def alive(self, proc: Proc) -> bool: ...

    def handles(self, proc: Proc, sig: int) -> bool: ...  # the process installed a handler for sig

    async def exec_in(self, target: Proc, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]: ...

    def forget(self, proc: Proc) -> None: ...  # done with a reaped process: drop its bookkeeping


def image_digest(image: str) -> str:
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


class NetkubeCni:
    """Calls netkube's CNI invoker (cni/invoke.py) with the node's plugin directory."""

    def __init__(self, bin_dirs: list[str]) -> None:
        self.bin_dirs = bin_dirs
        self._cache: dict[Path, tuple[float, dict[str, Any]]] = {}

    def _conflist(self, path: Path) -> dict[str, Any]:
        from cni.invoke import load_conflist  # type: ignore[import-not-found]

        mtime = path.stat().st_mtime
        hit = self._cache.get(path)
        if hit is None or hit[0] != mtime:
            hit = (mtime, load_conflist(str(path)))
            self._cache[path] = hit
        return hit[1]

    async def add(self, conflist: Path, container_id: str, netns_path: str, args: dict[str, str],
                  runtime_config: dict[str, Any] | None = None) -> dict[str, Any]:
        from cni.invoke import CniError, cni_add

        try:
            result: dict[str, Any] = await cni_add(
                self._conflist(conflist), self.bin_dirs, container_id, netns_path, "eth0", args, runtime_config
            )
        except CniError as e:
            raise CniFailure(str(e)) from e
        return result

    async def delete(self, conflist: Path, container_id: str, netns_path: str, args: dict[str, str],
                     runtime_config: dict[str, Any] | None = None) -> None:
        from cni.invoke import CniError, cni_del

        try:
            await cni_del(self._conflist(conflist), self.bin_dirs, container_id, netns_path, "eth0", args,
                          runtime_config=runtime_config)
        except CniError as e:
            raise CniFailure(str(e)) from e


@dataclass
class _BuiltinImage:
    inner: Any
    assets: Path
    image_id: str

    def command(self, container: dict[str, Any], pod: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        argv, env = self.inner.command(container, pod, self.assets, sys.executable)
        return list(argv), dict(env)

    @property
    def init_ignores_sigterm(self) -> bool:
        # Real busybox's sh/sleep as a container's PID 1 install no SIGTERM handler, so the kernel
        # drops SIGTERM and only SIGKILL (exit 137) ends them; httpd, nginx and the Go/Python
        # images exit on SIGTERM. We run busybox without a pid namespace, so emulate the rule.
        return bool(self.inner.kind == "busybox")


class BuiltinImages:
    """netkube's built-in images (netkube/images/registry.py); assets are prepared once, lazily."""

    def __init__(self, assets: Path) -> None:
        self.assets = assets
        self._prepared = False

    def resolve(self, image: str) -> Image:
        from netkube.images import registry  # type: ignore[attr-defined]

        try:
            inner = registry.resolve(image)
        except registry.ImageNotFound as e:
            raise ImageMissing(str(e)) from e
        if not self._prepared:
            registry.prepare_assets(self.assets)
            self._prepared = True
        return _BuiltinImage(inner, self.assets, image_digest(image))
