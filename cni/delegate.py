"""Calling a delegate plugin (IPAM, flannel→bridge) found in CNI_PATH, in-process when it is ours."""

from __future__ import annotations

import importlib
import os

from cni import jsonlite as json
from cni.spec import ERR_INVALID_CONFIG, Args, CniError, execute

# typing costs milliseconds per plugin run (a fresh interpreter each): annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MARKER = b"# netkube-cni-plugin: "


def find(plugin_type: str, path: list[str]) -> str:
    if not plugin_type or "/" in plugin_type:
        raise CniError(ERR_INVALID_CONFIG, f"invalid plugin type {plugin_type!r}")
    for d in path:
        candidate = os.path.join(d, plugin_type)
        if os.access(candidate, os.X_OK):
            return candidate
    raise CniError(ERR_INVALID_CONFIG, f"failed to find plugin {plugin_type!r} in path {path}")


def _own_module(exe: str) -> str | None:
    try:
        with open(exe, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER):].decode().strip()
    return None


def call(plugin_type: str, command: str, conf: dict[str, Any], a: Args,
         ifname: str | None = None) -> dict[str, Any] | None:
    """Invoke plugin_type with command and conf on stdin, reusing the caller's CNI env."""
    exe = find(plugin_type, a.path)
    env = dict(a.env, CNI_COMMAND=command)
    if ifname:
        env["CNI_IFNAME"] = ifname
    stdin = json.dumps(conf).encode()
    module = _own_module(exe)
    if module:
        # Same env/stdin/stdout contract, without another interpreter start.
        plugin = importlib.import_module(module).PLUGIN
        rc, out = execute(plugin, env, stdin)
    else:
        import subprocess  # only for foreign (reference) delegates

        proc = subprocess.run([exe], input=stdin, env=env, capture_output=True, timeout=60)
        rc, out = proc.returncode, proc.stdout.decode()
        if rc and not out.strip():
            raise CniError(ERR_INVALID_CONFIG, f"plugin {plugin_type} failed", proc.stderr.decode().strip())
    data = json.loads(out) if out.strip() else None
    if rc:
        err = data or {}
        raise CniError(int(err.get("code", 999)), str(err.get("msg", f"{plugin_type} failed")),
                       str(err.get("details", "")))
    return data
