"""The runtime side of CNI (what the kubelet calls): run a conflist's plugins per the spec."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from cni import procrun
from cni.spec import ERR_DECODE, ERR_INCOMPATIBLE_VERSION, ERR_INVALID_CONFIG, SUPPORTED_VERSIONS, CniError


def load_conflist(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise CniError(ERR_INVALID_CONFIG, f"cannot read CNI config {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CniError(ERR_DECODE, f"CNI config {path} is not valid JSON: {e}",
                       "fix the file; it must be a JSON object with name, cniVersion and plugins") from None
    if not isinstance(data, dict) or not isinstance(data.get("plugins"), list) or not data["plugins"]:
        raise CniError(ERR_INVALID_CONFIG, f"CNI config {path} needs a non-empty 'plugins' list")
    if not data.get("name"):
        raise CniError(ERR_INVALID_CONFIG, f"CNI config {path} has no 'name'")
    for p in data["plugins"]:
        if not isinstance(p, dict) or not p.get("type"):
            raise CniError(ERR_INVALID_CONFIG, f"CNI config {path}: every plugin needs a 'type'")
    version = str(data.get("cniVersion", ""))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(ERR_INCOMPATIBLE_VERSION, f"CNI config {path} has unknown cniVersion {version!r}",
                       f"use one of {', '.join(SUPPORTED_VERSIONS)}")
    return data


def _find(plugin_type: str, bin_dirs: list[str]) -> str:
    for d in bin_dirs:
        exe = os.path.join(d, plugin_type)
        if os.access(exe, os.X_OK):
            return exe
    raise CniError(ERR_INVALID_CONFIG, f"failed to find plugin {plugin_type!r} in path {bin_dirs}",
                   "install the CNI plugins into one of these directories")


async def _exec(command: str, net: dict[str, Any], bin_dirs: list[str], container_id: str, netns_path: str,
                ifname: str, args: dict[str, str]) -> dict[str, Any] | None:
    exe = _find(net["type"], bin_dirs)
    env = {
        "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns_path,
        "CNI_IFNAME": ifname, "CNI_PATH": ":".join(bin_dirs),
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in args.items()),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    returncode, out, err = await procrun.run([exe], env, json.dumps(net).encode())
    text = out.decode().strip()
    if returncode:
        try:
            e = json.loads(text)
            raise CniError(int(e.get("code", 999)), str(e.get("msg", "")), str(e.get("details", "")))
        except (ValueError, AttributeError):
            raise CniError(999, f"plugin {net['type']} failed (exit {returncode})",
                           (text + " " + err.decode()).strip()) from None
    if command != "ADD":
        return None
    try:
        return json.loads(text) if text else None
    except ValueError as e:
        raise CniError(ERR_DECODE, f"plugin {net['type']} printed an invalid result: {e}", text) from None


def _net(conflist: dict[str, Any], plugin: dict[str, Any], prev: dict[str, Any] | None,
         runtime_config: dict[str, Any] | None = None) -> dict[str, Any]:
    net = dict(plugin, name=conflist["name"], cniVersion=conflist.get("cniVersion", "1.0.0"))
    net.pop("capabilities", None)
    # Spec "Deriving runtimeConfig": only the capabilities this plugin declares are handed on.
    caps = plugin.get("capabilities") or {}
    rc = {k: v for k, v in (runtime_config or {}).items() if caps.get(k)}
    if rc:
        net["runtimeConfig"] = rc
    if prev is not None:
        net["prevResult"] = prev
    return net


async def cni_add(conflist: dict[str, Any], bin_dirs: list[str], container_id: str, netns_path: str,
                  ifname: str, args: dict[str, str], runtime_config: dict[str, Any] | None = None) -> dict[str, Any]:
    prev: dict[str, Any] | None = None
    for plugin in conflist["plugins"]:
        net = _net(conflist, plugin, prev, runtime_config)
        prev = await _exec("ADD", net, bin_dirs, container_id, netns_path, ifname, args)
    return prev or {}


async def cni_del(conflist: dict[str, Any], bin_dirs: list[str], container_id: str, netns_path: str,
                  ifname: str, args: dict[str, str], prev_result: dict[str, Any] | None = None,
                  runtime_config: dict[str, Any] | None = None) -> None:
    for plugin in reversed(conflist["plugins"]):
        net = _net(conflist, plugin, prev_result, runtime_config)
        await _exec("DEL", net, bin_dirs, container_id, netns_path, ifname, args)


async def cni_check(conflist: dict[str, Any], bin_dirs: list[str], container_id: str, netns_path: str,
                    ifname: str, args: dict[str, str], prev_result: dict[str, Any],
                    runtime_config: dict[str, Any] | None = None) -> None:
    for plugin in conflist["plugins"]:
        net = _net(conflist, plugin, prev_result, runtime_config)
        await _exec("CHECK", net, bin_dirs, container_id, netns_path, ifname, args)


async def cni_status(conflist: dict[str, Any], bin_dirs: list[str]) -> None:
    """Spec 1.1 STATUS: every plugin of the list must report ready (raises the first error)."""
    for plugin in conflist["plugins"]:
        await _exec("STATUS", _net(conflist, plugin, None), bin_dirs, "", "", "", {})


async def cni_gc(conflist: dict[str, Any], bin_dirs: list[str], valid: list[dict[str, str]]) -> None:
    """Spec 1.1 GC: valid = [{"containerID", "ifname"}]; plugins release everything else."""
    for plugin in conflist["plugins"]:
        net = dict(_net(conflist, plugin, None), **{"cni.dev/valid-attachments": valid})
        await _exec("GC", net, bin_dirs, "", "", "", {})


async def cni_version(plugin_type: str, bin_dirs: list[str]) -> dict[str, Any]:
    exe = _find(plugin_type, bin_dirs)
    proc = await asyncio.create_subprocess_exec(exe, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                env={"CNI_COMMAND": "VERSION"})
    out, _ = await proc.communicate(b'{"cniVersion": "1.0.0"}')
    result: dict[str, Any] = json.loads(out.decode())
    return result
