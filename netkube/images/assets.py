"""Host-side files the built-in images need: a busybox applet directory and the web roots."""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

BUSYBOX = "/bin/busybox"
WEB_ROOTS = ("httpd", "nginx")


def applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True, timeout=10).stdout
    return [a for a in out.split() if a and "/" not in a]


def _atomic_symlink(target: str, link: Path) -> None:
    # Several node agents may prepare the same directory at once: build aside, then rename over.
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _atomic_write(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare_assets(assets: Path, busybox: str = BUSYBOX) -> None:
    """Create (idempotently) assets/bin with one symlink per busybox applet and assets/www/<image>/."""
    bindir = assets / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in applets(busybox):
        link = bindir / name
        if not (link.is_symlink() and os.readlink(link) == busybox):
            _atomic_symlink(busybox, link)
    www = resources.files("netkube.images") / "www"
    for root in WEB_ROOTS:
        dest = assets / "www" / root
        dest.mkdir(parents=True, exist_ok=True)
        _atomic_write(dest / "index.html", (www / root / "index.html").read_bytes())
