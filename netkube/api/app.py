"""make_app: the aiohttp application serving the Kubernetes REST subset (no sockets bound here)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..config import ClusterConfig
from . import discovery, openapi
from .authn import Authenticator
from .bootstrap import ensure_system_objects
from .handlers import ResourceHandlers, parse_path, respond
from .registry import Registry
from .status import ApiStatusError, too_large
from .store import Store, Watch

log = logging.getLogger(__name__)
MAX_BODY = 3 * 1024 * 1024  # upstream's default request body limit is 3 MiB
REGISTRY = web.AppKey("registry", Registry)
WATCHES = web.AppKey("watches", set)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NOT_FOUND = "the server could not find the requested resource"


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a Kubernetes Status; nothing a client sends stops the server."""
    try:
        return await handler(request)
    except ApiStatusError as e:
        return respond(e.status(), e.code)
    except web.HTTPRequestEntityTooLarge:
        e2 = too_large()
        return respond(e2.status(), e2.code)
    except web.HTTPNotFound:
        return respond(ApiStatusError(404, "NotFound", NOT_FOUND, {}).status(), 404)
    except web.HTTPMethodNotAllowed:
        return respond(ApiStatusError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource").status(), 405)
    except web.HTTPException:
        raise
    except Exception as e:  # a bug: report it as upstream does and keep serving
        log.exception("internal error on %s %s", request.method, request.path)
        return respond(ApiStatusError(500, "InternalError", f"Internal error occurred: {type(e).__name__}: {e}").status(), 500)


def make_app(store: Store, cluster: ClusterConfig, authn: Authenticator | None = None) -> web.Application:
    # authn (netkube/api/authn.py), when given, runs first: 401 before anything else is looked at
    mws = [authn.middleware, status_errors] if authn is not None else [status_errors]
    app = web.Application(client_max_size=MAX_BODY, middlewares=mws)
    registry = Registry(store, cluster)
    watches: set[Watch] = set()
    app[REGISTRY] = registry
    app[WATCHES] = watches
    resources = ResourceHandlers(registry, watches)

    async def on_startup(_: web.Application) -> None:
        registry.load()
        await ensure_system_objects(registry, cluster)

    async def on_shutdown(_: web.Application) -> None:
        for w in list(watches):  # end open watch streams so the runner can stop promptly
            w.queue.put_nowait(None)
        for task in list(registry.tasks):
            task.cancel()
        await resources.pods.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)

    async def version(_: web.Request) -> web.Response:
        return respond(discovery.version())

    async def api(request: web.Request) -> web.Response:
        return respond(discovery.api_versions(request.host))

    async def apis(_: web.Request) -> web.Response:
        return respond(discovery.api_group_list())

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def openapi_root(_: web.Request) -> web.Response:
        return respond(openapi.root())

    async def openapi_v2(request: web.Request) -> web.Response:
        if "protobuf" in request.headers.get("Accept", ""):
            return web.Response(body=openapi.v2_protobuf(),
                                content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        return respond(openapi.v2_json())

    async def openapi_gv(request: web.Request) -> web.Response:
        parts = request.match_info["tail"].split("/")
        doc = None
        if len(parts) == 2 and parts[0] == "api":
            doc = openapi.gv_document("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = openapi.gv_document(parts[1], parts[2])
        if doc is None:
            raise web.HTTPNotFound()
        return respond(doc)

    async def core(request: web.Request) -> web.StreamResponse:
        segs = [s for s in request.match_info["tail"].split("/") if s]
        if not segs or segs[0] != "v1":
            raise web.HTTPNotFound()
        if len(segs) == 1:
            return respond(discovery.resource_list("", "v1"))
        return await resources.dispatch(request, parse_path("", "v1", segs[1:]))

    async def grouped(request: web.Request) -> web.StreamResponse:
        segs = [s for s in request.match_info["tail"].split("/") if s]
        if len(segs) == 1:
            group = discovery.api_group(segs[0])
            if group is None:
                raise web.HTTPNotFound()
            return respond(group)
        if len(segs) == 2:
            rl = discovery.resource_list(segs[0], segs[1])
            if rl is None:
                raise web.HTTPNotFound()
            return respond(rl)
        if discovery.resource_list(segs[0], segs[1]) is None:
            raise web.HTTPNotFound()
        return await resources.dispatch(request, parse_path(segs[0], segs[1], segs[2:]))

    r = app.router
    r.add_get("/version", version)
    r.add_get("/api", api)
    r.add_get("/api/", api)
    r.add_get("/apis", apis)
    r.add_get("/apis/", apis)
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, health)
    r.add_get("/openapi/v2", openapi_v2)
    r.add_get("/openapi/v3", openapi_root)
    r.add_get("/openapi/v3/{tail:.+}", openapi_gv)
    r.add_route("*", "/api/{tail:.+}", core)
    r.add_route("*", "/apis/{tail:.+}", grouped)
    return app
