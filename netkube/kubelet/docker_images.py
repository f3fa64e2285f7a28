"""Images for the docker runtime: the built-in image names, run from the local netkube/busybox image.

busybox, httpd and nginx are plain containers of netkube/busybox (httpd and nginx through the
entrypoint scripts the image carries). netkube's Python images (agnhost, kubernetes-bootcamp,
coredns, pause) run in the same image with the host's Python, virtualenv and netkube sources bound
read-only: real containers (own pid, mount and ipc namespaces, the pod's network), no registry.
Any other name fails the pull exactly as with the process runtime.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netkube.images import registry
from netkube.kubelet.dockerd import BUSYBOX_IMAGE
from netkube.kubelet.interfaces import ImageMissing

Obj = dict[str, Any]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# (ENTRYPOINT, CMD) of the images that are busybox inside.
BUSYBOX_KINDS: dict[str, tuple[list[str], list[str]]] = {
    "busybox": ([], ["sh"]),
    "httpd": ([], ["httpd-foreground"]),
    "nginx": ([], ["nginx", "-g", "daemon off;"]),
}


def python_binds() -> list[str]:
    """Read-only binds that let the host's interpreter and netkube run in a busybox container."""
    roots = {"/usr", sys.prefix, sys.base_prefix, registry.SOURCE_ROOT}
    out = []
    for root in sorted(roots):
        if root != "/usr" and any(Path(root).is_relative_to(r) for r in roots if r != root):
            continue  # already inside another bind
        out.append(f"{root}:{root}:ro")
    return out


@dataclass
class DockerImage:
    inner: registry.BuiltinImage
    image_id: str
    docker_image: str = BUSYBOX_IMAGE
    binds: list[str] = field(default_factory=list)

    @property
    def init_ignores_sigterm(self) -> bool:
        return False  # a real pid namespace: the kernel applies the PID 1 rule itself

    def command(self, container: Obj, pod: Obj) -> tuple[list[str], dict[str, str]]:
        """argv and image environment, with Kubernetes' command/args rules over the image defaults."""
        kind = self.inner.kind
        python = kind not in BUSYBOX_KINDS
        if python:
            entry, cmd = self.inner.spec.defaults(sys.executable, Path("/"))
        else:
            entry, cmd = BUSYBOX_KINDS[kind]
        argv = registry.container_argv(container, entry, cmd)
        if python and argv and argv[0] in self.inner.spec.aliases:
            make, keep = self.inner.spec.aliases[argv[0]]
            argv = make(sys.executable, Path("/"))[0] + (argv[1:] if keep else [])
        if not argv:
            raise registry.CommandNotFound("")
        env = {"PATH": PATH, "HOME": "/root"}
        if python:
            env.update(PYTHONPATH=registry.SOURCE_ROOT, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        return argv, env


class DockerImages:
    """ImageStore for the docker runtime; image_id is the local image's content id."""

    def __init__(self, image_id: str = "") -> None:
        self.image_id = image_id  # the engine's id of netkube/busybox, filled in by the runtime

    def resolve(self, image: str) -> DockerImage:
        try:
            inner = registry.resolve(image)
        except registry.ImageNotFound as e:
            raise ImageMissing(str(e)) from e
        binds = python_binds() if inner.kind not in BUSYBOX_KINDS else []
        return DockerImage(inner, self.image_id or "docker-image:" + BUSYBOX_IMAGE, binds=binds)
