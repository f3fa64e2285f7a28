"""The kubelet's HTTP server (port 10250): /containerLogs, /exec, /attach (channel WebSockets), /portForward (SPDY)."""

from __future__ import annotations

import logging
import os
import ssl
import sys
from collections.abc import Callable

from aiohttp import web

from netkube.kubelet import nsexec
from netkube.kubelet.streaming import channels as ch
from netkube.kubelet.streaming.attach import run_attach
from netkube.kubelet.streaming.execsession import StreamFlags, run_exec
from netkube.kubelet.streaming.logs import BadLogOptions, LogOptions, read_log
from netkube.kubelet.streaming.portforward import PROTOCOL as PORTFORWARD
from netkube.kubelet.streaming.portforward import Dialer, PortForwarder, netns_dialer
from netkube.kubelet.streaming.targets import (
    ContainerRef,
    PodLookup,
    StreamError,
    container,
    log_file,
    running,
)
from netkube.streaming.rawconn import hijack, is_upgrade
from netkube.streaming.spdy.session import Session

log = logging.getLogger(__name__)
KUBELET_PORT = 10250
NSEXEC = os.path.abspath(nsexec.__file__)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# How an exec'd command is launched for a container: (argv, env, cwd). The default enters the
# container's namespaces through nsexec; unit tests pass one that runs the command locally.
Launcher = Callable[[ContainerRef, list[str]], tuple[list[str], dict[str, str], str | None]]


def nsexec_launcher(c: ContainerRef, command: list[str]) -> tuple[list[str], dict[str, str], str | None]:
    """Join the main process's net/uts/mnt namespaces with its environment and working directory."""
    env = {"PATH": DEFAULT_PATH}
    try:
        raw = open(f"/proc/{c.pid}/environ", "rb").read()  # noqa: SIM115
        env.update(kv.decode(errors="replace").split("=", 1) for kv in raw.split(b"\0") if b"=" in kv)
        cwd = os.readlink(f"/proc/{c.pid}/cwd")
    except OSError:
        cwd = None
    argv = [sys.executable, "-I", "-S", NSEXEC, "--target", str(c.pid)]
    if cwd:
        argv += ["--cwd", cwd]
    return [*argv, "--", *command], env, None


def local_launcher(c: ContainerRef, command: list[str]) -> tuple[list[str], dict[str, str], str | None]:
    """Test seam: run the command as a plain local process."""
    return list(command), dict(os.environ), None


ERROR_HEADER = "X-Kubelet-Error"


def _error(e: StreamError) -> web.Response:
    # The apiserver turns this text into the Status message kubectl prints; the header carries it
    # through a refused WebSocket handshake, where clients do not read the body.
    return web.Response(status=e.code, text=e.message, headers={ERROR_HEADER: e.message})


class KubeletServer:
    """Constructed without I/O; start() binds host:port (port 0 picks a free one, see .port)."""

    def __init__(self, pods: PodLookup, host: str, port: int = KUBELET_PORT,
                 launcher: Launcher = nsexec_launcher, ssl_context: ssl.SSLContext | None = None,
                 pf_dialer: Callable[[str], Dialer] = netns_dialer) -> None:
        self.pods = pods
        self.pf_dialer = pf_dialer  # netns path -> how port-forward reaches localhost:port there
        self.host = host
        self.port = port
        self.launcher = launcher
        self.ssl_context = ssl_context  # TLS arrives with the auth work; the site already takes it
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/healthz", self._ok)
        r.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        for verb in ("exec", "attach"):
            r.add_route("GET", f"/{verb}/{{ns}}/{{pod}}/{{container}}", self.stream)
            r.add_route("POST", f"/{verb}/{{ns}}/{{pod}}/{{container}}", self.stream)
        for path in ("/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"):
            r.add_route("GET", path, self.portforward)
            r.add_route("POST", path, self.portforward)
        return app

    async def _ok(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            opts = LogOptions.from_query(request.query)
            _, c = container(self.pods, m["ns"], m["pod"], m["container"])
            path = log_file(m["pod"], c, opts.previous)
        except BadLogOptions as e:
            return _error(StreamError(400, str(e)))
        except StreamError as e:
            return _error(e)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        # The previous instance is over; only the current one can still grow.
        alive = (lambda: False) if opts.previous else c.alive
        async for chunk in read_log(path, opts, alive):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def stream(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        verb = request.path.split("/", 2)[1]
        flags = StreamFlags.from_query(request.query)
        command = request.query.getall("command", [])
        if verb == "exec" and not command:
            return _error(StreamError(400, "you must specify at least 1 command"))
        if not (flags.stdin or flags.stdout or flags.stderr):
            return _error(StreamError(400, "you must specify at least 1 of stdin, stdout, stderr"))
        try:
            _, c = running(self.pods, m["ns"], m["pod"], m["container"])
        except StreamError as e:
            return _error(e)
        ws = web.WebSocketResponse(protocols=ch.PROTOCOLS, autoping=True, heartbeat=None)
        if not ws.can_prepare(request).ok:
            return _error(StreamError(400, "netkube's kubelet streams over WebSocket only "
                                      "(v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported"))
        await ws.prepare(request)
        try:
            if verb == "exec":
                argv, env, cwd = self.launcher(c, command)
                await run_exec(ws, argv, env, cwd, flags, command)
            else:
                await run_attach(ws, c, flags)
        except Exception:
            log.exception("%s into %s/%s/%s failed", verb, m["ns"], m["pod"], m["container"])
        finally:
            await ws.close()
        return ws

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        """SPDY/3.1 upgrade speaking portforward.k8s.io (upstream's httpstream.Handshake checks first)."""
        m = request.match_info
        ref = self.pods.find(m["ns"], m["pod"])
        if ref is None or ("uid" in m and m["uid"] != ref.uid):
            return _error(StreamError(404, "pod does not exist"))
        if not is_upgrade(request, "SPDY/3.1"):
            return _error(StreamError(400, "unable to upgrade: missing upgrade headers in request"))
        offered = [p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", [])
                   for p in v.split(",") if p.strip()]
        if PORTFORWARD not in offered:
            text = (f"unable to upgrade: unable to negotiate protocol: client supports [{' '.join(offered)}], "
                    f"server accepts [{PORTFORWARD}]")
            resp = _error(StreamError(403, text))
            resp.headers["X-Accepted-Stream-Protocol-Versions"] = PORTFORWARD
            return resp
        if not ref.netns_path:
            return _error(StreamError(500, f"pod {m['pod']} has no network namespace yet"))
        resp, reader, writer = await hijack(request, {
            "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": PORTFORWARD})
        forwarder = PortForwarder(ref.uid, ref.netns_path, self.pf_dialer(ref.netns_path))
        try:
            await forwarder.serve(Session(reader, writer, forwarder.accept))
        except Exception:
            log.exception("port-forward to %s/%s failed", m["ns"], m["pod"])
        finally:
            writer.close()
        return resp
