"""The built-in images: which image references we run, and the argv/env each container gets."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import netkube
from netkube.images.assets import BUSYBOX, prepare_assets
from netkube.images.reference import ImageRef, InvalidReference, parse_reference

__all__ = ["BuiltinImage", "CommandNotFound", "ImageNotFound", "prepare_assets", "resolve"]

Obj = dict[str, Any]
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE_ROOT = str(Path(netkube.__file__).resolve().parent.parent)  # so `python -m netkube...` imports


class ImageNotFound(Exception):
    """The kubelet's pull failure; `reason` is the container waiting reason to report."""

    def __init__(self, image: str, detail: str, reason: str = "ErrImagePull") -> None:
        self.image = image
        self.reason = reason
        super().__init__(f'Failed to pull image "{image}": {detail}')


class CommandNotFound(Exception):
    """argv[0] is not on the container's PATH (runc's message, reported as StartError)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f'exec: "{name}": executable file not found in $PATH')


# Defaults(python, assets) -> (entrypoint, cmd); built by us, never from user strings.
Defaults = Callable[[str, Path], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Spec:
    kind: str
    repositories: tuple[str, ...]
    tags: str  # regular expression the tag must match entirely (real tags only, so typos fail)
    defaults: Defaults
    aliases: dict[str, tuple[Defaults, bool]] = field(default_factory=dict)  # argv0 -> (argv, keep args)
    python: bool = False


def _httpd_root(root: str) -> Defaults:
    return lambda py, a: ([BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(a / "www" / root)], [])


def _py(module: str, *cmd: str) -> Defaults:
    return lambda py, a: ([py, "-m", module], list(cmd))


SPECS = [
    Spec("httpd", ("docker.io/library/httpd",), r"latest|alpine|2(\.[24](\.\d{1,2})?)?(-alpine[\d.]*|-bookworm)?",
         lambda py, a: ([], [*_httpd_root("httpd")(py, a)[0]]),
         {"httpd-foreground": (_httpd_root("httpd"), False)}),
    Spec("nginx", ("docker.io/library/nginx",),
         r"latest|stable|mainline|alpine|(stable|mainline)-alpine|1(\.(1?\d|2[0-7])(\.\d{1,2})?)?(-alpine|-perl|-bookworm)?",
         lambda py, a: ([], [*_httpd_root("nginx")(py, a)[0]]),
         {"nginx": (_httpd_root("nginx"), False)}),
    Spec("busybox", ("docker.io/library/busybox",), r"latest|stable|musl|glibc|uclibc|1(\.\d{1,2}){1,2}(-(musl|glibc|uclibc))?",
         lambda py, a: ([], [str(a / "bin" / "sh")])),
    Spec("kubernetes-bootcamp", ("gcr.io/google-samples/kubernetes-bootcamp", "docker.io/jocatalin/kubernetes-bootcamp"),
         r"v1|v2|latest", lambda py, a: ([], [py, "-m", "netkube.images.bootcamp"]), python=True),
    Spec("agnhost", ("registry.k8s.io/e2e-test-images/agnhost", "k8s.gcr.io/e2e-test-images/agnhost"),
         r"2\.\d{1,2}(\.\d{1,2})?", _py("netkube.images.agnhost", "netexec"),
         {"/agnhost": (_py("netkube.images.agnhost"), True), "agnhost": (_py("netkube.images.agnhost"), True)},
         python=True),
    Spec("coredns", ("registry.k8s.io/coredns/coredns", "docker.io/coredns/coredns", "k8s.gcr.io/coredns/coredns"),
         r"latest|v?1\.\d{1,2}\.\d{1,2}", _py("netkube.dns"),
         {"/coredns": (_py("netkube.dns"), True), "coredns": (_py("netkube.dns"), True)}, python=True),
    Spec("pause", ("registry.k8s.io/pause", "k8s.gcr.io/pause"), r"latest|3\.\d{1,2}",
         _py("netkube.images.agnhost", "pause"), {"/pause": (_py("netkube.images.agnhost", "pause"), False)},
         python=True),
]
_BY_REPO = {repo: spec for spec in SPECS for repo in spec.repositories}

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined variables are replaced, $$ escapes, the rest stays."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, value)


def container_argv(container: Obj, entry: list[str], cmd: list[str]) -> list[str]:
    """Kubernetes: command replaces ENTRYPOINT and drops CMD; args alone replace CMD; $(VAR) from
    the container's literal env values is expanded in both."""
    literal = {e["name"]: e.get("value", "") for e in container.get("env") or [] if "valueFrom" not in e}
    user_cmd = [expand(s, literal) for s in container.get("command") or []]
    user_args = [expand(s, literal) for s in container.get("args") or []]
    if user_cmd:
        return user_cmd + user_args
    return entry + (user_args or cmd)


@dataclass(frozen=True)
class BuiltinImage:
    ref: ImageRef
    spec: Spec

    @property
    def kind(self) -> str:
        return self.spec.kind

    def command(self, container: Obj, pod: Obj, assets: Path, python: str) -> tuple[list[str], dict[str, str]]:
        """argv and environment additions for `container` (container env must be applied on top)."""
        entry, cmd = self.spec.defaults(python, assets)
        if self.kind == "kubernetes-bootcamp" and self.ref.tag == "v2":
            cmd = [*cmd, "--version", "2"]
        argv = container_argv(container, entry, cmd)
        if argv and argv[0] in self.spec.aliases:
            make, keep = self.spec.aliases[argv[0]]
            argv = make(python, assets)[0] + (argv[1:] if keep else [])
        env = self.environment(pod, assets)
        if not argv:
            raise CommandNotFound("")
        if "/" not in argv[0]:
            argv[0] = lookup(argv[0], env["PATH"])
        return argv, env

    def environment(self, pod: Obj, assets: Path) -> dict[str, str]:
        spec, md = pod.get("spec") or {}, pod.get("metadata") or {}
        env = {"PATH": f"{assets / 'bin'}:{BASE_PATH}",
               "HOSTNAME": spec.get("hostname") or md.get("name", ""), "HOME": "/root"}
        if self.spec.python:
            env.update(PYTHONPATH=SOURCE_ROOT, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        return env


def lookup(name: str, path: str) -> str:
    for d in path.split(":"):
        candidate = os.path.join(d, name)
        if d and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CommandNotFound(name)


def resolve(image: str) -> BuiltinImage:
    """The built-in image for a reference such as `httpd:2.4`; ImageNotFound for any other."""
    try:
        ref = parse_reference(image)
    except InvalidReference as e:
        raise ImageNotFound(image, str(e), reason="InvalidImageName") from None
    spec = _BY_REPO.get(ref.repository)
    if spec is None or (ref.tag and not re.fullmatch(spec.tags, ref.tag)):
        name = f"{ref.repository}:{ref.tag}" if ref.tag else str(ref)
        raise ImageNotFound(image, f'rpc error: code = NotFound desc = failed to pull and unpack image "{name}": '
                                   f'failed to resolve reference "{name}": {name}: not found')
    return BuiltinImage(ref, spec)
