"""The CNI protocol on the plugin side: env + stdin JSON in, result or error JSON out (spec 1.0/1.1)."""

from __future__ import annotations

import os
import sys

# collections.abc re-exports these; importing it also imports collections (~1 ms per plugin start).
from _collections_abc import Callable, Mapping

from cni import jsonlite as json

# typing costs milliseconds per plugin run (a fresh interpreter each): annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
CURRENT_VERSION = "1.1.0"
# STATUS and GC exist from spec 1.1.0 on; older configs get "unsupported" (code 1) for them.
V11_COMMANDS = ("STATUS", "GC")

# Well-known error codes of the spec.
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN = 11
ERR_INTERNAL = 999  # what libcni's skel reports for a plain plugin error


class CniError(Exception):
    """A CNI error with its code, message and details, as printed on stdout."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, version: str = CURRENT_VERSION) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg


class Args:
    """One invocation: env values plus the parsed network config.

    Plain classes, not dataclasses: every plugin run is a fresh interpreter, and importing
    dataclasses (inspect, re, ...) alone costs more than the rest of an ADD's Python imports."""

    def __init__(self, command: str, container_id: str, netns: str, ifname: str, path: list[str],
                 conf: dict[str, Any], args: dict[str, str] | None = None, env: dict[str, str] | None = None) -> None:
        self.command, self.container_id, self.netns, self.ifname = command, container_id, netns, ifname
        self.path, self.conf, self.args, self.env = path, conf, args or {}, env or {}

    @property
    def version(self) -> str:
        return str(self.conf.get("cniVersion", "0.2.0"))


Handler = Callable[[Args], "dict[str, Any] | None"]


def _nothing(_a: Args) -> None:
    return None


class Plugin:
    def __init__(self, add: Handler, delete: Handler, check: Handler, status: Handler = _nothing,
                 gc: Handler = _nothing) -> None:
        self.add, self.delete, self.check = add, delete, check
        self.status = status  # 1.1: "ready to serve ADDs?" — an error means not ready
        self.gc = gc  # 1.1: release what no attachment in cni.dev/valid-attachments holds


def parse_cni_args(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in filter(None, raw.split(";")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise CniError(ERR_INVALID_ENV, f"invalid CNI_ARGS pair {pair!r}", "expected KEY=VALUE;KEY=VALUE")
        out[key] = value
    return out


def parse(env: Mapping[str, str], stdin: bytes) -> Args:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(ERR_INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    try:
        conf = json.loads(stdin or b"{}")
    except ValueError as e:
        raise CniError(ERR_DECODE, "error decoding network config", str(e)) from None
    if not isinstance(conf, dict):
        raise CniError(ERR_DECODE, "error decoding network config", "top level must be a JSON object")
    a = Args(command, env.get("CNI_CONTAINERID", ""), env.get("CNI_NETNS", ""), env.get("CNI_IFNAME", ""),
             [p for p in env.get("CNI_PATH", "").split(":") if p], conf, env=dict(env))
    need = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"), "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
            "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"), "STATUS": (), "GC": ()}.get(command)
    if need is None:
        raise CniError(ERR_INVALID_ENV, f"unknown CNI_COMMAND: {command}",
                       "use ADD, DEL, CHECK, STATUS, GC or VERSION")
    missing = [k for k in need if not env.get(k)]
    if missing:
        raise CniError(ERR_INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    a.args = parse_cni_args(env.get("CNI_ARGS", ""))
    if a.version not in SUPPORTED_VERSIONS:
        raise CniError(ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {a.version!r}, plugin supports {SUPPORTED_VERSIONS}")
    if command in V11_COMMANDS and _vtuple(a.version) < (1, 1, 0):
        raise CniError(ERR_INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f"{command} needs cniVersion 1.1.0 or later, config is {a.version}")
    if command == "CHECK" and _vtuple(a.version) < (0, 4, 0):
        raise CniError(ERR_INCOMPATIBLE_VERSION, "config version does not allow CHECK",
                       f"CHECK needs cniVersion 0.4.0 or later, config is {a.version}")
    return a


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def convert_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Results are built as 1.0.0; before 1.0.0 each ip also carried "version": "4"."""
    out = dict(result, cniVersion=version)
    if _vtuple(version) < (1, 0, 0):
        out["ips"] = [dict(ip, version="6" if ":" in ip["address"] else "4") for ip in result.get("ips", [])]
    else:
        out["ips"] = [{k: v for k, v in ip.items() if k != "version"} for ip in result.get("ips", [])]
    return out


def execute(plugin: Plugin, env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Run one plugin command; returns (exit code, stdout text). Used in-process and by main()."""
    version = CURRENT_VERSION
    try:
        if env.get("CNI_COMMAND") == "VERSION":
            return 0, json.dumps({"cniVersion": CURRENT_VERSION, "supportedVersions": SUPPORTED_VERSIONS})
        a = parse(env, stdin)
        version = a.version
        handler = {"ADD": plugin.add, "DEL": plugin.delete, "CHECK": plugin.check,
                   "STATUS": plugin.status, "GC": plugin.gc}[a.command]
        result = handler(a)
        if a.command == "ADD" and result is not None:
            return 0, json.dumps(convert_result(result, version))
        return 0, ""
    except CniError as e:
        return 1, json.dumps(e.to_json(version))
    except OSError as e:
        return 1, json.dumps(CniError(ERR_IO, str(e)).to_json(version))
    except Exception as e:  # a plugin must always answer in CNI form
        return 1, json.dumps(CniError(ERR_INTERNAL, f"{type(e).__name__}: {e}").to_json(version))


def main(plugin: Plugin) -> int:
    rc, out = execute(plugin, os.environ, sys.stdin.buffer.read())
    if out:
        sys.stdout.write(out + "\n")
    return rc
