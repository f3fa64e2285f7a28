"""pods/log, pods/exec, pods/attach, pods/portforward: resolve pod, container and node, then proxy to the kubelet."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web

from ..config import ClusterConfig
from ..lab.netns import entered, netns_path
from ..streaming.rawconn import Upgrade, dial_upgrade, hijack, is_upgrade, relay_raw, relay_ws
from .registry import Registry
from .resources import BY_KIND
from .status import ApiStatusError, bad_request

log = logging.getLogger(__name__)
Obj = dict[str, Any]
LOG_PARAMS = ("follow", "previous", "tailLines", "limitBytes", "sinceSeconds", "timestamps")
STREAM_PARAMS = ("stdin", "stdout", "stderr", "tty")
ERROR_HEADER = "X-Kubelet-Error"  # the kubelet's refusal text, readable after a failed WS handshake
SPDY_TUNNEL = "SPDY/3.1+"  # WebSocket subprotocol prefix for SPDY tunnelled in WebSocket (kubectl 1.31+)
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}


def pick_container(pod: Obj, name: str | None) -> str:
    """The container a request means, with upstream's validateContainer errors."""
    pname = pod["metadata"]["name"]
    names = [c["name"] for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]]
    if not name:
        regular = [c["name"] for c in pod["spec"]["containers"]]
        if len(regular) == 1:
            return regular[0]
        if not regular:
            raise bad_request(f"a container name must be specified for pod {pname}")
        raise bad_request(f"a container name must be specified for pod {pname}, choose one of: [{' '.join(names)}]")
    if name not in names:
        raise bad_request(f"container {name} is not valid for pod {pname}")
    return name


def kubelet_error(code: int, text: str) -> ApiStatusError:
    """A kubelet refusal as the apiserver's response checker reports it (400 keeps the text as is)."""
    if code >= 500:
        return ApiStatusError(500, "InternalError", f"Internal error occurred: {text}")
    return ApiStatusError(code, REASONS.get(code, "BadRequest"), text)


class PodProxy:
    """Holds one client session to the kubelets; close() at app shutdown."""

    def __init__(self, registry: Registry, cluster: ClusterConfig | None = None) -> None:
        self.registry = registry
        self.cluster = cluster
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No total timeout: `logs -f` and interactive exec last as long as the user wants.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10),
                                                  connector=aiohttp.TCPConnector(socket_factory=self._socket))
        return self._session

    def _socket(self, addr_info: Any) -> socket.socket:
        """Dial node addresses from node1's netns when this host has no leg on the node network.

        The apiserver runs in the host's root netns and only listens inside node1's; its calls to
        kubelets (node IP:10250) must leave from there, as they would from a control-plane VM.
        """
        family, type_, proto, _, sockaddr = addr_info
        ns = self._dial_netns(sockaddr[0])
        if ns is None:
            return socket.socket(family, type_, proto)
        with entered(ns):
            return socket.socket(family, type_, proto)

    def _dial_netns(self, host: str) -> str | None:
        if self.cluster is None:
            return None
        try:
            inside = ipaddress.ip_address(host) in ipaddress.ip_network(self.cluster.node_cidr)
        except ValueError:
            return None
        ns = self.cluster.node_netns("node1")
        return ns if inside and os.path.exists(netns_path(ns)) else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _kubelet(self, pod: Obj) -> str:
        node_name = pod["spec"].get("nodeName")
        node = self.registry.get(BY_KIND["Node"], None, node_name)
        status = node.get("status") or {}
        addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        host = addrs.get("InternalIP") or addrs.get("Hostname") or node_name
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
        return f"http://{host}:{port}"  # TLS to the kubelet comes with the auth work

    def _target(self, request: web.Request, ns: str, name: str) -> tuple[Obj, str]:
        pod = self.registry.get(BY_KIND["Pod"], ns, name)
        return pod, pick_container(pod, request.query.get("container"))

    # --- pods/log ---------------------------------------------------------------------------
    async def logs(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        pod, container = self._target(request, ns, name)
        if not pod["spec"].get("nodeName"):
            return web.Response(text="", content_type="text/plain")  # not scheduled: no logs yet
        params = {k: request.query[k] for k in LOG_PARAMS if k in request.query}
        url = f"{self._kubelet(pod)}/containerLogs/{quote(ns)}/{quote(name)}/{quote(container)}"
        try:
            upstream = await self.session().get(url, params=params)
        except aiohttp.ClientError as e:
            raise _unreachable("Get", url, e) from None
        try:
            if upstream.status != 200:
                raise kubelet_error(upstream.status, (await upstream.text()).strip())
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)  # no length: chunked, so `logs -f` sees lines as they come
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            upstream.release()

    async def _refusal(self, url: str, query: list[tuple[str, str]]) -> None:
        """Raise the kubelet's error for this request, if it has one (it checks before upgrading)."""
        try:
            async with self.session().get(url, params=query) as resp:
                if resp.status >= 300 and resp.headers.get(ERROR_HEADER, "").find("WebSocket only") < 0:
                    raise kubelet_error(resp.status, (await resp.text()).strip())
        except aiohttp.ClientError as e:
            raise _unreachable("Get", url, e) from None

    # --- pods/exec, pods/attach -------------------------------------------------------------
    async def stream(self, request: web.Request, ns: str, name: str, verb: str) -> web.StreamResponse:
        pod, container = self._target(request, ns, name)
        if not pod["spec"].get("nodeName"):
            raise bad_request(f"pod {name} does not have a host assigned")
        query = [(k, v) for k, v in request.query.items() if k in STREAM_PARAMS or k == "command"]
        url = f"{self._kubelet(pod)}/{verb}/{quote(ns)}/{quote(name)}/{quote(container)}"
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        probe = web.WebSocketResponse(protocols=tuple(offered))
        if request.headers.get("Upgrade", "").lower() != "websocket" or not probe.can_prepare(request).ok:
            # kubectl 1.32 tries WebSocket first and falls back to SPDY when that upgrade fails, so
            # the kubelet's refusal must reach it here too: ask without upgrading.
            await self._refusal(url, query)
            raise bad_request("Upgrade request required: netkube streams exec/attach over WebSocket "
                              "(v5.channel.k8s.io); SPDY is not supported")
        try:
            kws = await self.session().ws_connect(url, params=query, protocols=offered, autoping=True,
                                                  max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            text = (e.headers or {}).get(ERROR_HEADER) or e.message
            raise kubelet_error(e.status, text) from None
        except aiohttp.ClientError as e:
            raise _unreachable("Get", url, e) from None
        try:
            ws = web.WebSocketResponse(protocols=(kws.protocol,) if kws.protocol else (), autoping=True,
                                       max_msg_size=0)
            await ws.prepare(request)
            await _relay(ws, kws)
        finally:
            await kws.close()
        await ws.close()
        return ws

    # --- pods/portforward -------------------------------------------------------------------
    async def portforward(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        """Relay a SPDY/3.1 port-forward session to the kubelet, as upstream's apiserver does.

        kubectl 1.31+ first asks for a WebSocket carrying SPDY frames (subprotocol
        SPDY/3.1+portforward.k8s.io): we upgrade the kubelet leg to plain SPDY and pass bytes
        between the two (upstream's TunnelingHandler). Older clients, or kubectl after a failed
        WebSocket attempt, upgrade to SPDY/3.1 directly: then both legs are raw bytes.
        """
        pod = self.registry.get(BY_KIND["Pod"], ns, name)
        if not pod["spec"].get("nodeName"):
            raise bad_request(f"pod {name} does not have a host assigned")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        websocket = is_upgrade(request, "websocket")
        if websocket:
            protocols = [p[len(SPDY_TUNNEL):] for p in offered
                         if p.startswith(SPDY_TUNNEL) and p.endswith(".k8s.io")]
            if not protocols:
                raise bad_request("unable to upgrade: no tunneling spdy protocols provided")
        elif is_upgrade(request, "SPDY/3.1"):
            protocols = [p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", [])
                         for p in v.split(",") if p.strip()]
        else:
            raise bad_request("Upgrade request required")
        up = await self._dial_spdy(pod, f"/portForward/{quote(ns)}/{quote(name)}", protocols)
        try:
            if up.status != 101:
                raise kubelet_error(up.status, (up.headers.get(ERROR_HEADER) or up.body.decode(errors="replace")).strip())
            chosen = up.headers.get("X-Stream-Protocol-Version", "")
            if websocket:
                ws = web.WebSocketResponse(protocols=(SPDY_TUNNEL + chosen,) if chosen else (),
                                           autoping=True, max_msg_size=0)
                await ws.prepare(request)
                await relay_ws(ws, up.reader, up.writer)
                return ws
            resp, reader, writer = await hijack(request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                                          "X-Stream-Protocol-Version": chosen})
            try:
                await relay_raw((reader, writer), (up.reader, up.writer))
            finally:
                writer.close()
            return resp
        finally:
            up.writer.close()

    async def _dial_spdy(self, pod: Obj, path: str, protocols: list[str]) -> Upgrade:
        host = self._kubelet(pod).removeprefix("http://")
        addr = host.rpartition(":")[0].strip("[]")
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        ns = self._dial_netns(addr)
        if ns is None:
            sock = socket.socket(family, socket.SOCK_STREAM)
        else:
            with entered(ns):
                sock = socket.socket(family, socket.SOCK_STREAM)
        headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        headers += [("X-Stream-Protocol-Version", p) for p in protocols]
        try:
            return await dial_upgrade(sock, host, path, [], headers)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
            raise _unreachable("Post", f"http://{host}{path}", e) from None


def _unreachable(method: str, url: str, e: Exception) -> ApiStatusError:
    return ApiStatusError(500, "InternalError", f'{method} "{url}": {e}')


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    """Copy messages both ways until either side closes (frames are channel-tagged; pass them as is)."""

    async def pump(src: Any, dst: Any) -> None:
        async for msg in src:
            if msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)
            else:
                break

    up = asyncio.create_task(pump(client, kubelet))
    down = asyncio.create_task(pump(kubelet, client))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down.done():
            await asyncio.wait({up}, timeout=0)  # the kubelet finished: its last frames are already sent
    finally:
        for t in (up, down):
            t.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
