"""Probe and lifecycle-hook handlers (exec, httpGet, tcpSocket), with upstream's results and messages."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
# exec_fn(argv, timeout) -> (exit code or None on timeout, combined output)
ExecFn = Callable[[list[str], float], Awaitable[tuple[int | None, str]]]
USER_AGENT = "kube-probe/1.32"  # upstream: kube-probe/<major>.<minor>


@dataclass(frozen=True)
class Result:
    ok: bool
    output: str = ""


def resolve_port(port: Any, container: Obj) -> int:
    """An int, a numeric string, or the name of one of the container's ports (upstream findPortByName)."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port: {port} in {container.get('name', '')}")


async def run_action(action: Obj, container: Obj, pod_ip: str, timeout: float, exec_fn: ExecFn) -> Result:
    """One probe/hook action; never raises (an error is a failed result with upstream's wording)."""
    try:
        if "exec" in action:
            return await _exec(action["exec"].get("command") or [], timeout, exec_fn)
        if "httpGet" in action:
            return await http_get(action["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in action:
            return await tcp_socket(action["tcpSocket"], container, pod_ip, timeout)
        if "sleep" in action:
            await asyncio.sleep(float(action["sleep"].get("seconds", 0)))
            return Result(True)
    except ValueError as e:
        return Result(False, str(e))
    return Result(False, "missing probe handler")


async def _exec(argv: list[str], timeout: float, exec_fn: ExecFn) -> Result:
    if not argv:
        return Result(False, "exec: no command given")
    code, out = await exec_fn([str(a) for a in argv], timeout)
    if code is None:
        return Result(False, f"command {' '.join(argv)!r} timed out")
    return Result(code == 0, out)


def _host(spec: Obj, pod_ip: str) -> str:
    return spec.get("host") or pod_ip


async def tcp_socket(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    host, port = _host(spec, pod_ip), resolve_port(spec.get("port"), container)
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return Result(False, f"dial tcp {host}:{port}: i/o timeout")
    except OSError as e:
        return Result(False, f"dial tcp {host}:{port}: connect: {_errno_text(e)}")
    w.close()
    return Result(True)


def _errno_text(e: OSError) -> str:
    # asyncio rewrites the message ("Connect call failed ..."); Go prints strerror, e.g. "connection refused".
    return os.strerror(e.errno).lower() if e.errno else str(e)


def http_request(spec: Obj, host: str, port: int) -> bytes:
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"Host": f"{host}:{port}", "User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
    for h in spec.get("httpHeaders") or []:
        # Upstream: a Host header in httpHeaders replaces the Host; others are added as given.
        key = next((k for k in headers if k.lower() == str(h.get("name", "")).lower()), h.get("name", ""))
        headers[key] = str(h.get("value", ""))
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


async def http_get(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    """Success for 200 <= status < 400, as upstream's HTTP prober (redirects are not followed)."""
    host, port = _host(spec, pod_ip), resolve_port(spec.get("port"), container)
    scheme = (spec.get("scheme") or "HTTP").lower()
    url = f"{scheme}://{host}:{port}{spec.get('path') or '/'}"
    ctx: ssl.SSLContext | None = None
    if scheme == "https":
        ctx = ssl.create_default_context()  # upstream skips verification (InsecureSkipVerify)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    async def go() -> Result:
        try:
            r, w = await asyncio.open_connection(host, port, ssl=ctx)
        except OSError as e:
            return Result(False, f'Get "{url}": dial tcp {host}:{port}: connect: {_errno_text(e)}')
        try:
            w.write(http_request(spec, host, port))
            await w.drain()
            status_line = (await r.readline()).decode("latin-1").split()
            body = await r.read(10 * 1024)  # upstream keeps at most 10 KiB of the body
        finally:
            w.close()
        if len(status_line) < 2 or not status_line[1].isdigit():
            return Result(False, f'Get "{url}": malformed HTTP response')
        code = int(status_line[1])
        if 200 <= code < 400:
            return Result(True, body.decode("utf-8", "replace"))
        return Result(False, f"HTTP probe failed with statuscode: {code}")

    try:
        return await asyncio.wait_for(go(), timeout)
    except TimeoutError:
        return Result(False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)')
    except (OSError, ConnectionError) as e:
        return Result(False, f'Get "{url}": {e}')
