"""Async Kubernetes REST client and informer used by controllers, the node agent and DNS.

Objects are plain dicts in Kubernetes JSON form, exactly as they cross the wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    group_version: str  # "v1" or "apps/v1"
    plural: str
    kind: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)


NAMESPACES = Resource("v1", "namespaces", "Namespace", namespaced=False)
NODES = Resource("v1", "nodes", "Node", namespaced=False)
PODS = Resource("v1", "pods", "Pod")
SERVICES = Resource("v1", "services", "Service")
ENDPOINTS = Resource("v1", "endpoints", "Endpoints")
EVENTS = Resource("v1", "events", "Event")
CONFIGMAPS = Resource("v1", "configmaps", "ConfigMap")
DEPLOYMENTS = Resource("apps/v1", "deployments", "Deployment")
REPLICASETS = Resource("apps/v1", "replicasets", "ReplicaSet")
ENDPOINTSLICES = Resource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice")
LEASES = Resource("coordination.k8s.io/v1", "leases", "Lease")


class ApiError(Exception):
    """A non-2xx answer; carries the Kubernetes Status object."""

    def __init__(self, code: int, status: Obj) -> None:
        self.code = code
        self.status = status
        self.reason = status.get("reason", "")
        super().__init__(f"{code} {self.reason}: {status.get('message', '')}")


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0, *,
                 ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                 key_file: str | Path | None = None, token_file: str | Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # TLS (https URLs): the cluster CA, a client cert/key pair, or a token file that is re-read
        # whenever a session is made, as client-go re-reads rotated service-account tokens
        self.ca_file, self.cert_file, self.key_file, self.token_file = ca_file, cert_file, key_file, token_file
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.base_url.startswith("https:"):
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file or self.cert_file))
        return ctx

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        headers = {"Accept": "application/json", "User-Agent": "netkube"}
        token = Path(self.token_file).read_text().strip() if self.token_file else self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return aiohttp.ClientSession(headers=headers,
                                     connector=aiohttp.TCPConnector(limit=limit, ssl=self.ssl_context() or True))

    async def session(self) -> aiohttp.ClientSession:
        """Requests share a small keep-alive pool: a burst (a kubelet starting 25 pods) then queues on
        warm connections instead of opening one TLS connection per concurrent request, whose
        handshakes cost both sides more CPU than the requests."""
        if self._session is None or self._session.closed:
            self._session = self._new_session(limit=8)
        return self._session

    async def watch_session(self) -> aiohttp.ClientSession:
        """Watches hold their connection for minutes: a pool of their own, unbounded, so that
        informers never starve requests (HTTP/1.1 has no multiplexing as client-go's HTTP/2 has)."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = self._new_session(limit=0)
        return self._watch_session

    async def close(self) -> None:
        for s in (self._session, self._watch_session):
            if s is not None:
                await s.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        session = await self.session()
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with session.request(
            method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
        ) as resp:
            text = await resp.text()
            try:
                payload = json.loads(text) if text else {}
            except json.JSONDecodeError:
                payload = {"kind": "Status", "message": text, "code": resp.status}
            if resp.status >= 400:
                raise ApiError(resp.status, payload)
            return payload  # type: ignore[no-any-return]

    # --- verbs --------------------------------------------------------------------------------
    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj:
        return await self.request("GET", res.path(namespace, name))

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Obj:
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        return await self.request("GET", res.path(namespace), params=params or None)

    async def create(self, res: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", res.path(ns), obj)

    async def update(self, res: Resource, obj: Obj, sub: str | None = None) -> Obj:
        md = obj["metadata"]
        return await self.request("PUT", res.path(md.get("namespace"), md["name"], sub), obj)

    async def update_status(self, res: Resource, obj: Obj) -> Obj:
        return await self.update(res, obj, sub="status")

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        sub: str | None = None,
        patch_type: str = "application/merge-patch+json",
    ) -> Obj:
        return await self.request("PATCH", res.path(namespace, name, sub), patch, content_type=patch_type)

    async def delete(
        self, res: Resource, name: str, namespace: str | None = None, grace_period: int | None = None
    ) -> Obj:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        return await self.request("DELETE", res.path(namespace, name), body)

    async def bind(self, pod: Obj, node: str) -> Obj:
        md = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": md["name"], "namespace": md["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        return await self.request("POST", PODS.path(md["namespace"], md["name"], "binding"), binding)

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Yield (type, object) events until the server closes the stream."""
        params = {"watch": "true", "timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        session = await self.watch_session()
        url = self.base_url + res.path(namespace) + "?" + urlencode(params)
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)) as resp:
            if resp.status >= 400:
                text = await resp.text()
                try:
                    raise ApiError(resp.status, json.loads(text))
                except json.JSONDecodeError:
                    raise ApiError(resp.status, {"message": text}) from None
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]


Handler = Callable[[str, Obj, Obj | None], Awaitable[None] | None]


class Informer:
    """List + watch one resource into a cache and call handlers on every change.

    handler(event_type, obj, old) with event_type ADDED/MODIFIED/DELETED. A dropped connection
    resumes the watch from the last resourceVersion; 410 Gone re-lists and emits the differences,
    so no change is lost or repeated.
    """

    def __init__(
        self,
        client: ApiClient,
        res: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, Obj] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self._rv: str | None = None

    @staticmethod
    def key(obj: Obj) -> str:
        md = obj["metadata"]
        return f"{md['namespace']}/{md['name']}" if md.get("namespace") else md["name"]

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.cache.get(f"{namespace}/{name}" if namespace else name)

    def items(self) -> list[Obj]:
        return list(self.cache.values())

    async def _emit(self, kind: str, obj: Obj, old: Obj | None) -> None:
        for h in self.handlers:
            try:
                r = h(kind, obj, old)
                if asyncio.iscoroutine(r):
                    await r
            except Exception:
                log.exception("handler for %s %s failed", self.res.plural, kind)

    async def _relist(self) -> None:
        data = await self.client.list(self.res, self.namespace, self.label_selector, self.field_selector)
        self._rv = data.get("metadata", {}).get("resourceVersion")
        fresh = {self.key(o): o for o in data.get("items", [])}
        kind = self.res.kind
        for o in fresh.values():
            o.setdefault("kind", kind)
            o.setdefault("apiVersion", self.res.group_version)
        old_cache = self.cache
        self.cache = dict(fresh)
        for k, o in fresh.items():
            prev = old_cache.get(k)
            if prev is None:
                await self._emit("ADDED", o, None)
            elif prev.get("metadata", {}).get("resourceVersion") != o["metadata"].get("resourceVersion"):
                await self._emit("MODIFIED", o, prev)
        for k, prev in old_cache.items():
            if k not in fresh:
                await self._emit("DELETED", prev, prev)

    async def run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    self.synced.set()
                async for etype, obj in self.client.watch(
                    self.res, self.namespace, self._rv, self.label_selector, self.field_selector
                ):
                    backoff = 0.2
                    if etype == "BOOKMARK":
                        self._rv = obj["metadata"]["resourceVersion"]
                        continue
                    if etype == "ERROR":
                        need_list = True
                        break
                    self._rv = obj["metadata"].get("resourceVersion", self._rv)
                    k = self.key(obj)
                    old = self.cache.get(k)
                    if etype == "DELETED":
                        self.cache.pop(k, None)
                    else:
                        self.cache[k] = obj
                    await self._emit(etype, obj, old)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.code == 410:
                    need_list = True
                    continue
                log.warning("watch %s failed: %s", self.res.plural, e)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except (TimeoutError, aiohttp.ClientError, OSError, json.JSONDecodeError) as e:
                log.debug("watch %s interrupted: %s", self.res.plural, e)
                # like client-go's reflector: resume the watch from the last resourceVersion (the
                # store replays what was missed, also across an apiserver restart); 410 relists
                need_list = self._rv is None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster_client(sa_dir: Path = SA_DIR) -> ApiClient:
    """client-go's rest.InClusterConfig: KUBERNETES_SERVICE_HOST/PORT plus the mounted token and CA."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ApiError(0, {"message": "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set"})
    host = f"[{host}]" if ":" in host else host
    if not (sa_dir / "token").exists():  # a cluster started with --insecure-http mounts no token
        return ApiClient(f"http://{host}:{port}")
    return ApiClient(f"https://{host}:{port}", ca_file=sa_dir / "ca.crt", token_file=sa_dir / "token")


def cluster_client(cluster: Any, who: str, url: str | None = None) -> ApiClient:
    """A client for a netkube component with its identity from the cluster PKI (netkube/pki.py):
    "admin", "controller-manager" or "nodes/<node>"; plain HTTP for --insecure-http clusters."""
    base = url or cluster.api_url_host
    if cluster.insecure_http:
        return ApiClient(base.replace("https://", "http://", 1))
    pki = cluster.pki_dir
    return ApiClient(base, ca_file=pki / "ca.crt", cert_file=pki / f"{who}.crt", key_file=pki / f"{who}.key")
